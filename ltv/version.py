"""The code version recorded in every dataset manifest and model version (lineage)."""
from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit when run from a checkout ($LTV_CODE_VERSION overrides)."""
    if os.environ.get("LTV_CODE_VERSION"):
        return os.environ["LTV_CODE_VERSION"]
    try:
        base = version("player-ltv")
    except PackageNotFoundError:
        base = "0+unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{base}+g{sha}" if sha else base
