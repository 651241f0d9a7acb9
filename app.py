"""The CDK app: a game config in, that game's AWS account out.

    cdk deploy -c game=galaxy-raiders     # one game (config/games/galaxy-raiders.yaml)
    cdk synth                              # every game in config/games (what CI checks)

Stack env, names and settings all come from the config; see stacks/game.py and docs/deploy.md.
"""
from pathlib import Path

from stacks.game import build_app
from stacks.packaging import build_core_wheel

ROOT = Path(__file__).resolve().parent

build_app(core_wheel=build_core_wheel(ROOT, ROOT / "dist")).synth()
