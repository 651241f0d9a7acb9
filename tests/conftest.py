"""Shared fixtures: small game configs derived from the example games, and temporary lakes."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from ltv import config as cfg

ROOT = Path(__file__).resolve().parent.parent
GAMES = ROOT / "config" / "games"
os.environ.setdefault("LTV_CONFIG_DIR", str(GAMES))
np.random.seed(0)


def raw_config(game: str = "galaxy-raiders") -> dict[str, Any]:
    return yaml.safe_load((GAMES / f"{game}.yaml").read_text())


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge overrides into a copy of base (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in overrides.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_config(game: str = "galaxy-raiders", **overrides: Any) -> cfg.GameConfig:
    return cfg.parse(merge(raw_config(game), overrides), source=f"test:{game}")


@pytest.fixture
def tiny_config() -> cfg.GameConfig:
    """galaxy-raiders at a size that simulates in about a second."""
    return make_config(simulation={"daily_installs": 60, "days": 90})


@pytest.fixture
def lake_root(tmp_path: Path) -> Path:
    return tmp_path / "lake"
