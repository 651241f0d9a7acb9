"""Reproducible dependencies: the three hashed locks agree with each other and with pyproject.toml,
the tests run with the locked versions, and the core wheel is built from the sources alone.

requirements/all.txt is what `make install` syncs (every extra, Python 3.11 on any OS);
requirements/glue.txt is the Glue jobs' closure (cp311 manylinux_2_34), shipped as the wheelhouse;
requirements/image.txt is the core + `image` extra for the SageMaker image (cp311 linux x86_64).
"""
from __future__ import annotations

import shutil
import sys
import tomllib
import zipfile
from importlib.metadata import PackageNotFoundError, version

import pytest
from packaging.requirements import Requirement

from conftest import ROOT

sys.path.append(str(ROOT))  # stacks/ is not an installed package

from stacks.packaging import (  # noqa: E402
    GLUE_LOCK, REQUIREMENTS, Pin, build_core_wheel, check_wheelhouse, normalise, read_lock, wheel_name_version,
)

# the environment every lock is for: CI, Glue 5.0 and the SageMaker image all run CPython 3.11 on Linux x86_64
LINUX_311 = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
             "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
             "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}


@pytest.fixture(scope="module")
def locks() -> dict[str, dict[str, Pin]]:
    return {name: read_lock(REQUIREMENTS / f"{name}.txt", LINUX_311) for name in ("all", "glue", "image")}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements(*groups: str) -> list[Requirement]:
    """The project's requirements: the base list ("base") and the named extras."""
    meta = pyproject()["project"]
    out = []
    for group in groups:
        out += [Requirement(r) for r in (meta["dependencies"] if group == "base" else meta["optional-dependencies"][group])]
    return [r for r in out if r.marker is None or r.marker.evaluate(LINUX_311)]


def test_every_lock_pins_every_entry_exactly_with_hashes(locks):
    for name, pins in locks.items():
        assert len(pins) > 20, name
        unhashed = [p.name for p in pins.values() if not p.hashes or not all(h.startswith("sha256:") for h in p.hashes)]
        assert not unhashed, f"{name}.txt: entries without sha256 hashes: {unhashed}"


def test_the_three_locks_pin_the_same_version_of_every_shared_package(locks):
    everything = locks["all"]
    for name in ("glue", "image"):
        assert set(locks[name]) <= set(everything), f"{name}.txt has packages all.txt does not: " \
                                                    f"{sorted(set(locks[name]) - set(everything))}"
        differing = {p: (locks[name][p].version, everything[p].version) for p in locks[name]
                     if locks[name][p].version != everything[p].version}
        assert not differing, f"{name}.txt and all.txt disagree ({name}, all): {differing}; run `make lock`"


def test_pyproject_ranges_admit_the_pins_and_every_dependency_is_locked(locks):
    meta = pyproject()["project"]
    extras = sorted(meta["optional-dependencies"])
    for lock, groups in {"all": ["base", *extras], "image": ["base", "image"]}.items():
        for req in requirements(*groups):
            pin = locks[lock].get(normalise(req.name))
            assert pin is not None, f"{req} is not in requirements/{lock}.txt; run `make lock`"
            assert req.specifier.contains(pin.version, prereleases=True), \
                f"requirements/{lock}.txt pins {pin.name}=={pin.version}, outside pyproject's {req}; run `make lock`"
    glue_in = [line.strip() for line in (REQUIREMENTS / "glue.in").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert {normalise(n) for n in glue_in} <= set(locks["glue"])
    assert {"numpy", "pandas", "pyarrow", "duckdb", "awswrangler"} <= set(locks["glue"]), \
        "the jobs run the tested numpy/pandas/pyarrow, not Glue's own copies"
    assert not {"autogluon-tabular", "sagemaker", "aws-cdk-lib"} & set(locks["glue"]), "the ETL closure stays small"
    assert {"autogluon-tabular", "gunicorn", "boto3"} <= set(locks["image"])
    assert not {"aws-cdk-lib", "moto", "pytest"} & set(locks["image"]), "the image holds no build or test tools"


def test_the_tests_run_with_the_locked_versions(locks):
    """`make install` syncs requirements/all.txt: what runs here is what the locks ship."""
    wrong = {}
    for pin in locks["all"].values():
        try:
            installed = version(pin.name)
        except PackageNotFoundError:
            installed = None
        if installed != pin.version:
            wrong[pin.name] = (installed, pin.version)
    assert not wrong, f"installed != locked (installed, locked): {wrong}; run `make install`"


def test_make_install_syncs_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert "pip sync" in makefile and "requirements/all.txt" in makefile
    assert "--no-deps" in makefile, "the project itself adds no unlocked dependency"


def test_read_lock_refuses_a_range_and_a_package_pinned_twice(tmp_path):
    lock = tmp_path / "x.txt"
    lock.write_text("numpy>=2 \\\n    --hash=sha256:aa\n")
    with pytest.raises(ValueError, match="not an exact pin"):
        read_lock(lock)
    lock.write_text("numpy==2.0 \\\n    --hash=sha256:aa\nNumPy==2.1 \\\n    --hash=sha256:bb\n")
    with pytest.raises(ValueError, match="pinned twice"):
        read_lock(lock)


def test_a_wheelhouse_must_hold_exactly_the_locked_wheels():
    pins = {"numpy": Pin("numpy", "2.4.6", ("sha256:x",)), "pyyaml": Pin("pyyaml", "6.0.4", ("sha256:y",))}
    good = ["numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl",
            "pyyaml-6.0.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"]
    check_wheelhouse(pins, good)
    with pytest.raises(RuntimeError, match="numpy: \\['2.4.5'\\] instead of 2.4.6"):
        check_wheelhouse(pins, ["numpy-2.4.5-cp311-cp311-manylinux_2_28_x86_64.whl", good[1]])
    with pytest.raises(RuntimeError, match="pyyaml: no wheel"):
        check_wheelhouse(pins, good[:1])
    with pytest.raises(RuntimeError, match="six: not in the lock"):
        check_wheelhouse(pins, [*good, "six-1.17.0-py2.py3-none-any.whl"])
    with pytest.raises(ValueError):
        wheel_name_version("0a1b2c3d.whl")  # a CDK file asset's name is no wheel name: pip refuses it


def test_the_glue_lock_is_for_glue_5(locks):
    header = GLUE_LOCK.read_text().splitlines()[:2]
    assert header[1].strip() == "#    make lock", "generated by `make lock`, not by hand"
    makefile = (ROOT / "Makefile").read_text()
    assert "--python-platform x86_64-manylinux_2_34" in makefile and "--python-version 3.11" in makefile


@pytest.mark.slow
def test_the_core_wheel_is_built_from_the_sources_only_and_reproducibly(tmp_path):
    """A stale `build/lib` (a module deleted from the sources, an old copy of a changed one) must
    not reach the wheel; the same sources give the same bytes; glue_jobs ships with the core."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (project / name).write_bytes((ROOT / name).read_bytes())
    for package in ("ltv", "glue_jobs"):
        shutil.copytree(ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    stale = project / "build" / "lib" / "ltv"
    stale.mkdir(parents=True)
    (stale / "deleted_module.py").write_text("raise RuntimeError('deleted long ago')\n")
    (stale / "etl.py").write_text("# an old copy\n")
    (project / "ltv" / "__pycache__").mkdir(exist_ok=True)
    (project / "ltv" / "__pycache__" / "junk.cpython-311.pyc").write_bytes(b"junk")
    first = build_core_wheel(project, tmp_path / "one")
    second = build_core_wheel(project, tmp_path / "two")
    assert first.read_bytes() == second.read_bytes(), "reproducible: no spurious job update on deploy"
    names = zipfile.ZipFile(first).namelist()
    assert "ltv/deleted_module.py" not in names and not [n for n in names if n.endswith(".pyc")]
    assert zipfile.ZipFile(first).read("ltv/etl.py") == (ROOT / "ltv" / "etl.py").read_bytes()
    assert {"glue_jobs/_common.py", "glue_jobs/daily.py", "ltv/sql/features.sql", "ltv/athena.py"} <= set(names)
