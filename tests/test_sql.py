"""One SQL source, two engines: the Athena (Trino) rendering parses; names come from the config."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlglot

from conftest import make_config
from ltv import etl, sql

CUTOFF = dt.date(2025, 6, 2)


def rendered(game: str) -> dict[str, str]:
    config = make_config(game)
    return {
        "player_day": etl.player_day_sql(config, dt.date(2025, 6, 1), dt.date(2025, 6, 1)),
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


def test_feature_sql_reads_only_history_before_the_cutoff() -> None:
    tree = sqlglot.parse_one(rendered("galaxy-raiders")["features"], read="duckdb")
    reads = [t for t in tree.find_all(sqlglot.exp.Table) if t.name == "player_day"]
    assert len(reads) == 1, "player_day is read in exactly one place"
    assert reads[0].parent_select.args["where"].sql() == "WHERE dt < '2025-06-02'"
