"""What the Glue jobs run: the core package as a wheel, and its locked dependencies as a wheelhouse.

- The core wheel (`ltv` + `glue_jobs`) is built from a clean copy of the sources, so a stale
  `build/lib` can never ship a deleted module, and reproducibly (fixed timestamps): unchanged
  sources give identical bytes, an identical asset hash and no spurious job update on deploy.
  The jobs put it on their Python path (`--extra-py-files`, as a .zip) instead of pip-installing
  it: pip would resolve the core's full dependency list (AutoGluon and friends), which the ETL
  never imports.
- The libraries the ETL does import are locked in requirements/glue.txt (`make lock`: the
  closure of requirements/glue.in, hashed, at the versions the tests run with, numpy/pandas/
  pyarrow included). `glue_wheelhouse` downloads exactly those files as cp311 manylinux wheels
  for Glue 5.0 (Amazon Linux 2023, glibc 2.34) once per lock; the stack uploads them under their
  real names (pip refuses a wheel whose file name is not a wheel name, and CDK file assets are
  named by their hash) and Glue installs them with `--no-index`: no package index at run time.
- The Lambdas' code (`lambda_bundle`) is one directory asset, built here without docker: the
  wheels of requirements/lambda.txt for the python3.11 runtime (Amazon Linux 2, manylinux2014),
  unpacked, the AWS SDK included; the core package from the core wheel; and lambdas/. The SDK is
  shipped because the one the runtime provides varies by region and date, and `ltv.runs` needs
  S3's conditional writes (`IfNoneMatch`/`IfMatch`, unknown to botocore before 1.35.x): the
  asset's directory comes first on the runtime's path, so the locked boto3 is the one imported.
  Handlers are found by module name (`lambdas.score.handler`): a directory asset keeps its file
  names, only its zip is named by hash.
- Both wheelhouses are one `Platform` each (lock, Python, wheel tags) downloaded by `wheelhouse`.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import uuid
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
REQUIREMENTS = PROJECT / "requirements"
GLUE_LOCK = REQUIREMENTS / "glue.txt"
LAMBDA_LOCK = REQUIREMENTS / "lambda.txt"
REPRODUCIBLE_EPOCH = "315532800"  # 1980-01-01, the earliest timestamp a zip file can hold
COMPLETE = "wheelhouse.json"  # written last: the list of wheels of a finished download
LAMBDAS_DIR = PROJECT / "lambdas"


@dataclass(frozen=True)
class Platform:
    """Where a lock's wheels run: `name` (the cache folder's prefix), the lock, the CPython version and
    the manylinux tags its glibc runs, best first (pip does not expand `--platform` itself)."""

    name: str
    lock: Path
    python: str
    glibc_minor: int

    @property
    def tags(self) -> tuple[str, ...]:
        return (*(f"manylinux_2_{m}_x86_64" for m in range(self.glibc_minor, 16, -1)), "manylinux2014_x86_64")


# Glue 5.0: Python 3.11 on Amazon Linux 2023 (glibc 2.34), x86_64
GLUE = Platform("glue", GLUE_LOCK, "3.11", 34)
# the Lambdas' python3.11 runtime on Amazon Linux 2 (glibc 2.26), x86_64
LAMBDA = Platform("lambda", LAMBDA_LOCK, "3.11", 26)


# ----------------------------------------------------------------------------------------------
# locks


@dataclass(frozen=True)
class Pin:
    """One locked distribution: its normalised name, exact version and the hashes of its files."""

    name: str
    version: str
    hashes: tuple[str, ...]


def normalise(name: str) -> str:
    """A distribution name as the lock files and wheel file names compare it (PEP 503)."""
    return name.lower().replace("_", "-").replace(".", "-")


def read_lock(path: Path, environment: dict[str, str] | None = None) -> dict[str, Pin]:
    """The pins of a hashed lock file (`name==version ; marker \\ --hash=...` entries). With
    `environment`, entries whose marker does not hold there are left out (all.txt is universal)."""
    from packaging.requirements import Requirement

    pins: dict[str, Pin] = {}
    entries = path.read_text().replace("\\\n", " ").splitlines()
    for entry in entries:
        text = entry.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        spec, *options = text.split(" --hash=")
        req = Requirement(spec.strip())
        if environment is not None and req.marker is not None and not req.marker.evaluate(environment):
            continue
        pinned = [s.version for s in req.specifier if s.operator == "=="]
        if len(pinned) != 1:
            raise ValueError(f"{path.name}: {spec.strip()!r} is not an exact pin")
        name = normalise(req.name)
        if name in pins:
            raise ValueError(f"{path.name}: {name} is pinned twice for one environment")
        pins[name] = Pin(name, pinned[0], tuple(o.strip() for o in options))
    return pins


# ----------------------------------------------------------------------------------------------
# the core wheel


def build_core_wheel(project: Path, out: Path) -> Path:
    """Build the core package's wheel into `out` (replacing an older build) and return its path.

    The build runs in a fresh copy of the project's packaged sources (pyproject.toml, README and
    the packages `[tool.setuptools.packages.find]` includes), so leftovers of earlier builds in
    the working tree (`build/lib`, `*.egg-info`, `__pycache__`) cannot end up in the wheel. When
    this environment has the build backend pyproject.toml asks for, the build uses it (offline,
    fast); otherwise pip fetches it into an isolated build environment."""
    out.mkdir(parents=True, exist_ok=True)
    isolation = ["--no-build-isolation"] if _has_build_backend(project) else []
    with tempfile.TemporaryDirectory(prefix="ltv-wheel-") as tmp:
        source, built = Path(tmp) / "src", Path(tmp) / "dist"
        _copy_sources(project, source)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--quiet", "--disable-pip-version-check",
             *isolation, "-w", str(built)], env={**os.environ, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH},
            capture_output=True, text=True)
        wheels = sorted(built.glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise RuntimeError(f"building the core wheel failed (pip wheel {project}):\n{done.stdout}{done.stderr}")
        target = out / wheels[0].name
        shutil.move(str(wheels[0]), target)
    return target


def _copy_sources(project: Path, target: Path) -> None:
    """Copy what the wheel is built from: pyproject.toml, its readme, and the included packages."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    patterns = meta["tool"]["setuptools"]["packages"]["find"]["include"]
    target.mkdir(parents=True)
    for name in ("pyproject.toml", meta["project"].get("readme", "README.md")):
        shutil.copy2(project / name, target / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", ".*")
    for package in sorted(project.iterdir()):
        if (package / "__init__.py").exists() and any(fnmatch.fnmatch(package.name, p) for p in patterns):
            shutil.copytree(package, target / package.name, ignore=ignore)


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
    """The wheel under a .zip name, for `--extra-py-files` (Glue puts .zip files on the Python path;
    a pure-Python wheel is such a zip, with the packages at its root)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / (wheel.stem + ".zip")
    shutil.copyfile(wheel, target)
    return target


# ----------------------------------------------------------------------------------------------
# the Glue wheelhouse


@dataclass(frozen=True)
class Wheelhouse:
    """A directory holding exactly one wheel per pin of a lock; `digest` names the lock's content."""

    path: Path
    digest: str
    wheels: tuple[str, ...]


def lock_digest(platform: Platform) -> str:
    """Identity of a wheelhouse: the lock's bytes and the platform the wheels are for."""
    return hashlib.sha256(platform.lock.read_bytes() + f"\n{platform.python} {platform.tags[0]}".encode()).hexdigest()[:16]


def wheelhouse_cache() -> Path:
    """Where wheelhouses are kept between synths and test runs: $LTV_WHEELHOUSE_CACHE, else the
    user's cache directory (~/.cache/ltv/wheelhouse)."""
    if os.environ.get("LTV_WHEELHOUSE_CACHE"):
        return Path(os.environ["LTV_WHEELHOUSE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ltv" / "wheelhouse"


def wheelhouse(platform: Platform, cache: Path | None = None) -> Wheelhouse:
    """Every pin of the platform's lock as a wheel for it, downloaded (hash-checked) once per lock
    content; later calls return the cached directory without touching the network."""
    digest = lock_digest(platform)
    target = (cache or wheelhouse_cache()) / f"{platform.name}-{digest}"
    if not (target / COMPLETE).exists():
        _download(platform.lock, target, read_lock(platform.lock), platform.tags, platform.python)
    wheels = tuple(json.loads((target / COMPLETE).read_text())["wheels"])
    return Wheelhouse(target, digest, wheels)


def lambda_bundle(core_wheel: Path, wheelhouse: Wheelhouse, target: Path) -> Path:
    """The Lambdas' code directory: the wheelhouse's wheels unpacked, the core package `ltv` from the
    core wheel, and lambdas/*.py (rebuilt from scratch; no caches, so its asset hash follows its
    content)."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for wheel in wheelhouse.wheels:
        with zipfile.ZipFile(wheelhouse.path / wheel) as z:
            z.extractall(target)
    with zipfile.ZipFile(core_wheel) as z:
        z.extractall(target, members=[m for m in z.namelist() if m.startswith("ltv/")])
    (target / "lambdas").mkdir()
    for source in sorted(LAMBDAS_DIR.glob("*.py")):
        shutil.copyfile(source, target / "lambdas" / source.name)
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache)
    return target


def _download(lock: Path, target: Path, pins: dict[str, Pin], tags: tuple[str, ...], python: str) -> None:
    """pip download the `pins` of a lock (hash-checked) into a scratch directory, check one wheel per
    pin, then move it into place (atomic: concurrent synths or test workers never see half a
    wheelhouse)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    requirements = target.parent / f".req-{target.name}-{uuid.uuid4().hex[:8]}.txt"
    try:
        requirements.write_text("".join(f"{p.name}=={p.version} " + " ".join(f"--hash={h}" for h in p.hashes) + "\n"
                                        for p in pins.values()))
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--only-binary=:all:", "--require-hashes", *(f"--platform={tag}" for tag in tags),
             "--python-version", python, "--implementation", "cp", "-r", str(requirements), "-d", str(scratch)],
            capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"downloading the wheelhouse of {lock.name} failed:\n{done.stdout}{done.stderr}")
        wheels = sorted(p.name for p in scratch.glob("*.whl"))
        check_wheelhouse(pins, wheels)
        (scratch / COMPLETE).write_text(json.dumps({"lock": lock.name, "wheels": wheels}, indent=1))
        try:
            scratch.rename(target)
        except OSError:  # another process finished first: keep its copy
            if not (target / COMPLETE).exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        requirements.unlink(missing_ok=True)


def check_wheelhouse(pins: dict[str, Pin], wheels: list[str]) -> None:
    """Exactly one wheel per pin, at the pinned version, and nothing else."""
    found: dict[str, list[str]] = {}
    for wheel in wheels:
        name, ver = wheel_name_version(wheel)
        found.setdefault(name, []).append(ver)
    problems = [f"{n}: {found.get(n, 'no wheel')} instead of {p.version}" for n, p in sorted(pins.items())
                if found.get(n) != [p.version]]
    problems += [f"{n}: not in the lock" for n in sorted(set(found) - set(pins))]
    if problems:
        raise RuntimeError("the wheelhouse does not match its lock:\n  " + "\n  ".join(problems))


def wheel_name_version(filename: str) -> tuple[str, str]:
    """(normalised name, version) of a wheel file name; ValueError if it is not one (what pip checks)."""
    from packaging.utils import canonicalize_name, parse_wheel_filename

    name, ver, _build, _tags = parse_wheel_filename(filename)
    return normalise(canonicalize_name(name)), str(ver)
