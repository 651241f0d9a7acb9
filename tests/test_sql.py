"""One SQL source, two engines: the Athena (Trino) rendering parses; names come from the config."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlglot

from conftest import make_config
from ltv import etl, sql

CUTOFF = dt.date(2025, 6, 2)
PREVIOUS = dt.date(2025, 5, 26)


def rendered(game: str) -> dict[str, str]:
    config = make_config(game)
    return {
        "player_day": etl.player_day_sql(config, dt.date(2025, 6, 1), dt.date(2025, 6, 1)),
        "player_summary": etl.summary_sql(config, CUTOFF, PREVIOUS),
        "player_summary from scratch": etl.summary_sql(config, CUTOFF),
        "features": etl.features_sql(config, CUTOFF),
        "labels": etl.labels_sql(config, CUTOFF),
        "dataset": sql.render("dataset", config, split="train", cutoffs=["2025-05-26", "2025-06-02"]),
    }


@pytest.mark.parametrize("game", ["galaxy-raiders", "dragon-merge"])
def test_trino_rendering_of_every_template_parses(game: str) -> None:
    """Athena's dialect parses everything (the exact text is snapshot-tested per Glue job in
    tests/test_glue_jobs.py, which sends these templates)."""
    for name, text in rendered(game).items():
        trino = sql.to_trino(text)
        sqlglot.parse_one(trino, read="trino")  # raises on anything Trino cannot parse
        assert "PERCENTILE_CONT" not in trino and "QUANTILE" not in trino.upper(), name


def test_templates_take_names_from_the_config() -> None:
    a, b = rendered("galaxy-raiders"), rendered("dragon-merge")
    assert '"revenue_usd"' in a["player_day"] and "'iap_purchase'" in a["player_day"]
    assert '"Amount"' in b["player_day"] and "WHEN 'JPY' THEN 0.0067" in b["player_day"]
    assert '"SessionMs" AS DOUBLE) / 1000.0' in b["player_day"]
    assert "FROM game_events" in b["player_day"] and "FROM player_profiles" in b["features"]
    # each history step appears in the steps CTE and in the final select
    steps = {g: make_config(g).features.n_steps for g in ("galaxy-raiders", "dragon-merge")}
    assert a["features"].count("AS revenue_w") == 2 * steps["galaxy-raiders"]
    assert b["features"].count("AS revenue_w") == 2 * steps["dragon-merge"]


def reads(text: str, table: str) -> list[str]:
    """The WHERE clause of every SELECT that reads `table` directly."""
    tree = sqlglot.parse_one(text, read="duckdb")
    return [t.parent_select.args["where"].sql() for t in tree.find_all(sqlglot.exp.Table) if t.name == table]


def test_feature_sql_reads_only_history_before_the_cutoff() -> None:
    text = rendered("galaxy-raiders")["features"]
    assert reads(text, "player_day") == ["WHERE dt < '2025-06-02' AND (dt >= '2025-04-07' OR purchases > 0)"], \
        "player_day is read in exactly one place: the 8 weekly steps, and purchase days for the median gap"
    assert reads(text, "player_summary") == ["WHERE cutoff = '2025-06-02'"], "the summary at the cutoff, only"


def test_summary_sql_reads_the_previous_summary_and_the_days_since() -> None:
    texts = rendered("galaxy-raiders")
    assert reads(texts["player_summary"], "player_day") == ["WHERE dt >= '2025-05-26' AND dt < '2025-06-02'"]
    assert reads(texts["player_summary"], "player_summary") == ["WHERE cutoff = '2025-05-26'"]
    assert reads(texts["player_summary from scratch"], "player_day") == ["WHERE dt < '2025-06-02'"]
    assert reads(texts["player_summary from scratch"], "player_summary") == []
    with pytest.raises(ValueError, match="cannot continue"):
        etl.summary_sql(make_config(), PREVIOUS, CUTOFF)
