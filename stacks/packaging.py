"""What the Glue jobs run: the core package built as a wheel, and the pinned libraries it needs.

The wheel is built reproducibly (fixed timestamps), so unchanged sources give identical bytes,
an identical asset hash and no spurious job update on deploy. The jobs put it on their Python
path (`--extra-py-files`, as a .zip) instead of pip-installing it: pip would resolve the core's
full dependency list (AutoGluon and friends), which the ETL never imports. The libraries the ETL
does import are pinned to the versions installed here, i.e. the versions the tests ran with.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# Distributions the job code path imports (ltv.config/sql/engine/etl/datasets/validation/athena)
# beyond what Glue 5.0 provides (boto3, numpy, pandas, pyarrow).
GLUE_JOB_DEPENDENCIES = ("awswrangler", "duckdb", "jinja2", "pydantic", "pyyaml", "sqlglot")
GLUE_PROVIDED = ("boto3", "botocore", "numpy", "pandas", "pyarrow", "s3transfer")
REPRODUCIBLE_EPOCH = "315532800"  # 1980-01-01, the earliest timestamp a zip file can hold


def job_requirements() -> list[str]:
    """`--additional-python-modules` entries: each job dependency pinned to the local version."""
    return [f"{name}=={version(name)}" for name in GLUE_JOB_DEPENDENCIES]


def build_core_wheel(project: Path, out: Path) -> Path:
    """Build the core package's wheel into `out` (replacing an older build) and return its path.

    When this environment already has the build backend pyproject.toml asks for, the build
    uses it (offline, fast); otherwise pip fetches it into an isolated build environment."""
    out.mkdir(parents=True, exist_ok=True)
    isolation = ["--no-build-isolation"] if _has_build_backend(project) else []
    with tempfile.TemporaryDirectory(prefix="ltv-wheel-") as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", str(project), "--no-deps", "--quiet", "--disable-pip-version-check",
             *isolation, "-w", tmp], env={**os.environ, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH},
            capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise RuntimeError(f"building the core wheel failed (pip wheel {project}):\n{done.stdout}{done.stderr}")
        target = out / wheels[0].name
        shutil.move(str(wheels[0]), target)
    return target


def _has_build_backend(project: Path) -> bool:
    """True if every `[build-system] requires` entry of the project is installed here."""
    from packaging.requirements import Requirement

    requires = tomllib.loads((project / "pyproject.toml").read_text())["build-system"]["requires"]
    for text in requires:
        req = Requirement(text)
        try:
            if not req.specifier.contains(version(req.name), prereleases=True):
                return False
        except PackageNotFoundError:
            return False
    return True


def python_path_zip(wheel: Path, out_dir: Path) -> Path:
    """The wheel under a .zip name, for `--extra-py-files` (Spark puts .zip files on the Python path;
    a pure-Python wheel is such a zip, with the package at its root)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / (wheel.stem + ".zip")
    shutil.copyfile(wheel, target)
    return target
