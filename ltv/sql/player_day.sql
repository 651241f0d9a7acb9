-- Daily aggregates: one row per player per active day, from the raw events of [start, end].
-- Events whose timestamp is not on their partition's day are left out (validation reports
-- them), duplicates are removed by the game's rule (`logs.events.deduplicate`: rows sharing an
-- event id, or exact duplicate rows, or none), and rows without a player id are dropped.
-- Removing duplicates is most of the query's cost, so days that validation found free of
-- duplicate events (`plain_days`) skip it; every other day (`dedup_days`, all days by default)
-- pays it. Only the roles the config maps get a column: a purchase-only log has no logins.
{% macro events_of(distinct, days) %}
    SELECT{{ " DISTINCT" if distinct and dedup == "exact_rows" else "" }}
        CAST({{ col.player_id | q }} AS {{ id_type }}) AS player_id,
{% if col.event_id and (dedup == "exact_rows" or (distinct and dedup == "by_id")) %}
        {{ col.event_id | q }} AS event_id,
{% endif %}
        CAST({{ col.event_time | q }} AS TIMESTAMP) AS event_time,
{% if col.event_type %}
        {{ col.event_type | q }} AS event_type,
{% endif %}
        {{ revenue_expr }} AS revenue,
{% if col.level %}
        CAST({{ col.level | q }} AS BIGINT) AS level,
{% endif %}
{% if col.session_length %}
        {{ session_seconds_expr }} AS session_seconds,
{% endif %}
        dt
    FROM {{ events }}
    WHERE dt BETWEEN {{ start | lit }} AND {{ end | lit }}
{% if days is not none %}
      AND dt IN {{ days | inlist }}
{% endif %}
      AND {{ col.player_id | q }} IS NOT NULL
      AND CAST({{ col.event_time | q }} AS DATE) = CAST(dt AS DATE)
{% endmacro %}
{% macro deduplicated(days) %}
{% if dedup == "by_id" %}
    -- one row per event id: rows sharing an id are copies of one event
    SELECT player_id, MIN(event_time) AS event_time
{% if col.event_type %}
        , MIN(event_type) AS event_type
{% endif %}
        , MAX(revenue) AS revenue
{% if col.level %}
        , MAX(level) AS level
{% endif %}
{% if col.session_length %}
        , MAX(session_seconds) AS session_seconds
{% endif %}
        , dt
    FROM (
{{ events_of(true, days) }}
    ) copies
    GROUP BY player_id, event_id, dt
{% else %}
{{ events_of(true, days) }}
{% endif %}
{% endmacro %}
WITH raw AS (
{% if dedup == "none" or (plain_days and not dedup_days) %}
{{ events_of(false, none) }}
{% elif not plain_days %}
{{ deduplicated(none) }}
{% else %}
{{ events_of(false, plain_days) }}
    UNION ALL
{{ deduplicated(dedup_days) }}
{% endif %}
)
SELECT
    player_id,
{% if types.login %}
    CAST(SUM(CASE WHEN event_type IN {{ types.login | inlist }} THEN 1 ELSE 0 END) AS BIGINT) AS logins,
{% endif %}
{% if types.session %}
    CAST(SUM(CASE WHEN event_type IN {{ types.session | inlist }} THEN 1 ELSE 0 END) AS BIGINT) AS sessions,
    COALESCE(SUM(CASE WHEN event_type IN {{ types.session | inlist }} THEN session_seconds END), 0.0) AS play_seconds,
{% endif %}
{% if types.level_up %}
    CAST(SUM(CASE WHEN event_type IN {{ types.level_up | inlist }} THEN 1 ELSE 0 END) AS BIGINT) AS level_ups,
{% endif %}
{% if col.level %}
    MAX(level) AS max_level,
{% endif %}
{% if col.event_type %}
    CAST(SUM(CASE WHEN event_type IN {{ types.purchase | inlist }} THEN 1 ELSE 0 END) AS BIGINT) AS purchases,
    COALESCE(SUM(CASE WHEN event_type IN {{ types.purchase | inlist }} THEN revenue END), 0.0) AS revenue,
{% else %}
    -- a purchase-only log: every row is a purchase
    CAST(COUNT(*) AS BIGINT) AS purchases,
    COALESCE(SUM(revenue), 0.0) AS revenue,
{% endif %}
    COUNT(*) AS events,
    dt
FROM raw
GROUP BY player_id, dt
