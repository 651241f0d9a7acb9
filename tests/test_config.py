"""The game config: both example games load; every kind of bad file gets a precise message."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from conftest import GAMES, make_config, raw_config
from ltv.config import merge
from ltv import config as cfg
from ltv.cli import app
from ltv.errors import ConfigError


@pytest.mark.parametrize("path", sorted(GAMES.glob("*.yaml")), ids=lambda p: p.stem)
def test_example_games_load_and_match_their_file_name(path: Path) -> None:
    c = cfg.load(path)
    assert c.game.id == path.stem
    assert c.simulation is not None


def test_example_games_use_different_log_schemas() -> None:
    a, b = cfg.load("galaxy-raiders"), cfg.load("dragon-merge")
    assert a.logs.events.columns != b.logs.events.columns
    assert set(a.logs.events.event_types.allowed()).isdisjoint(b.logs.events.event_types.allowed())
    assert a.logs.player_id_type != b.logs.player_id_type
    assert b.logs.events.columns.currency and not a.logs.events.columns.currency


def _error(raw: dict, tmp_path: Path) -> str:
    path = tmp_path / "game.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as e:
        cfg.load(path)
    assert str(path) in str(e.value), "the message names the file"
    return str(e.value)


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    msg = _error(merge(raw_config(), {"features": {"n_step": 4}}), tmp_path)
    assert "features.n_step" in msg and "did you mean 'n_steps'" in msg


def test_wrong_type_names_field_value_and_rule(tmp_path: Path) -> None:
    msg = _error(merge(raw_config(), {"horizons": {"ltv_days": "a month"}}), tmp_path)
    assert "horizons.ltv_days" in msg and '"a month"' in msg and "integer" in msg


def test_event_type_in_two_roles_is_rejected(tmp_path: Path) -> None:
    msg = _error(merge(raw_config(), {"logs": {"events": {"event_types": {"login": ["iap_purchase"]}}}}), tmp_path)
    assert "'iap_purchase' is listed under both 'login' and 'purchase'" in msg


def test_bad_cron_and_bad_account(tmp_path: Path) -> None:
    msg = _error(merge(raw_config(), {"schedules": {"retrain": "0 5 * * 1"}, "aws": {"account": "12"}}), tmp_path)
    assert "schedules.retrain" in msg and "six fields" in msg
    assert "aws.account" in msg and "12 digits" in msg


def test_fx_rates_without_currency_column(tmp_path: Path) -> None:
    msg = _error(merge(raw_config(), {"logs": {"events": {"revenue": {"fx_rates": {"EUR": 1.1}}}}}), tmp_path)
    assert "currency" in msg


def test_unknown_validation_check_name_is_rejected(tmp_path: Path) -> None:
    msg = _error(merge(raw_config(), {"validation": {"severity": {"dupes": "warn"}}}), tmp_path)
    assert "dupes" in msg and "duplicate_events" in msg


def test_missing_file_lists_known_games() -> None:
    with pytest.raises(ConfigError, match="galaxy-raiders"):
        cfg.load("no-such-game")


def test_malformed_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("game: {id: x\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        cfg.load(path)


def test_json_schema_accepts_examples_and_rejects_typos() -> None:
    schema = cfg.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for path in GAMES.glob("*.yaml"):
        jsonschema.validate(json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str)), schema)
    bad = merge(json.loads(json.dumps(raw_config(), default=str)), {"horizons": {"ltv_dayz": 3}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_config_hash_changes_with_modelling_settings_only() -> None:
    base = make_config()
    assert make_config(alerts={"emails": ["x@y.io"]}).config_hash() == base.config_hash()
    assert make_config(horizons={"ltv_days": 14}).config_hash() != base.config_hash()


def test_cli_validate_reports_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(merge(raw_config(), {"features": {"step_days": 0}})))
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 2
    assert "features.step_days" in result.output and "Traceback" not in result.output


def test_cli_schema_prints_json() -> None:
    result = CliRunner().invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "Player LTV game config"


def test_committed_schema_for_editors_is_current() -> None:
    """config/schema.json (referenced by the example YAMLs for editors) is what `ltv config schema` prints;
    regenerate it with: ltv config schema -o config/schema.json"""
    committed = json.loads((GAMES.parent / "schema.json").read_text())
    assert committed == json.loads(json.dumps(cfg.json_schema()))


def test_cli_validate_reads_each_file_once(monkeypatch) -> None:
    reads: list[Path] = []
    real = cfg.load
    monkeypatch.setattr(cfg, "load", lambda path, *a, **k: reads.append(Path(path)) or real(path, *a, **k))
    result = CliRunner().invoke(app, ["config", "validate"])
    assert result.exit_code == 0, result.output
    assert sorted(reads) == sorted(GAMES.glob("*.yaml")), "each file loaded once, the duplicate-id check reuses it"


def test_a_config_loads_without_the_data_checks() -> None:
    """ltv.config names the checks itself: no import circle with ltv.validation."""
    import subprocess
    import sys

    code = ("import sys; from ltv import config; config.load('galaxy-raiders', {'validation': {'severity': "
            "{'volume': 'off'}}}); print('ltv.validation' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
