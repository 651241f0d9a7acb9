-- Daily aggregates: one row per player per active day, from the raw events of [start, end].
-- Events whose timestamp is not on their partition's day are left out (validation reports
-- them), exact duplicate rows count once, and rows without a player id are dropped. Removing
-- duplicates is most of the query's cost, so days that validation found free of duplicate
-- events (`plain_days`) skip it; every other day (`dedup_days`, all days by default) pays it.
{% macro events_of(distinct, days) %}
    SELECT{{ " DISTINCT" if distinct else "" }}
        CAST({{ col.player_id | q }} AS {{ id_type }}) AS player_id,
        CAST({{ col.event_time | q }} AS TIMESTAMP) AS event_time,
        {{ col.event_type | q }} AS event_type,
        {{ revenue_expr }} AS revenue,
        CAST({{ col.level | q }} AS BIGINT) AS level,
        {{ session_seconds_expr }} AS session_seconds,
        dt
    FROM {{ events }}
    WHERE dt BETWEEN {{ start | lit }} AND {{ end | lit }}
{% if days is not none %}
      AND dt IN {{ days | inlist }}
{% endif %}
      AND {{ col.player_id | q }} IS NOT NULL
      AND CAST({{ col.event_time | q }} AS DATE) = CAST(dt AS DATE)
{% endmacro %}
WITH raw AS (
{% if not plain_days %}
{{ events_of(true, none) }}
{% elif not dedup_days %}
{{ events_of(false, none) }}
{% else %}
{{ events_of(false, plain_days) }}
    UNION ALL
{{ events_of(true, dedup_days) }}
{% endif %}
)
SELECT
    player_id,
    CAST(SUM(CASE WHEN event_type IN {{ types.login | inlist }} THEN 1 ELSE 0 END) AS BIGINT) AS logins,
    CAST(SUM(CASE WHEN event_type IN {{ types.session | inlist }} THEN 1 ELSE 0 END) AS BIGINT) AS sessions,
    COALESCE(SUM(CASE WHEN event_type IN {{ types.session | inlist }} THEN session_seconds END), 0.0) AS play_seconds,
    CAST(SUM(CASE WHEN event_type IN {{ types.level_up | inlist }} THEN 1 ELSE 0 END) AS BIGINT) AS level_ups,
    MAX(level) AS max_level,
    CAST(SUM(CASE WHEN event_type IN {{ types.purchase | inlist }} THEN 1 ELSE 0 END) AS BIGINT) AS purchases,
    COALESCE(SUM(CASE WHEN event_type IN {{ types.purchase | inlist }} THEN revenue END), 0.0) AS revenue,
    COUNT(*) AS events,
    dt
FROM raw
GROUP BY player_id, dt
