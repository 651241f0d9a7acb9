-- Features at cutoff {{ cutoff }}: only player_day rows before the cutoff are read (dt < cutoff),
-- so no feature can see an event at or after it. Population: players with an active day in
-- [{{ window_start }}, {{ cutoff }}) who installed before the cutoff (or have no install record).
-- History steps: step w1 is the most recent {{ step_days }} days, up to w{{ n_steps }}.
-- Whole-history features come from the running summary at the cutoff (player_summary.sql: the
-- mergeable aggregates of every player_day row before the cutoff, kept up to date cutoff by
-- cutoff), so history is not rescanned; the recent features read player_day of
-- [{{ recent_start }}, {{ cutoff }}) only.
WITH summary AS (
    SELECT * FROM player_summary WHERE cutoff = {{ cutoff | lit }}
),
days AS (
    -- one read of player_day: the recent days, and the purchase days of the whole history. The
    -- exact median gap needs every gap of a player: it cannot be merged from the medians (or any
    -- fixed-size aggregate) of parts of the history, so it is computed here from the purchase
    -- days, a small share of the rows, read through three columns
    SELECT * FROM player_day
    WHERE dt < {{ cutoff | lit }} AND (dt >= {{ recent_start | lit }} OR purchases > 0)
),
{% if players %}
installs AS (
    SELECT
        CAST({{ pcol.player_id | q }} AS {{ id_type }}) AS player_id,
        MIN(CAST({{ pcol.install_time | q }} AS TIMESTAMP)) AS install_time
{% for name, column in attributes.items() %}
        , MIN({{ column | q }}) AS attr_{{ name }}
{% endfor %}
    FROM {{ players }}
    WHERE {% if players_partitioned %}dt < {{ cutoff | lit }} AND {% endif %}{{ pcol.player_id | q }} IS NOT NULL
    GROUP BY 1
),
{% endif %}
recent AS (
    -- each recent row's history step once (1 = the most recent step_days), then one pass of sums
    SELECT
        player_id,
        CAST(SUM(CASE WHEN dt >= {{ window_start | lit }} THEN 1 ELSE 0 END) AS BIGINT) AS active_days_window
{% for s in steps %}
        , CAST(SUM(CASE WHEN step = {{ loop.index }} THEN 1 ELSE 0 END) AS BIGINT) AS active_days_w{{ loop.index }}
{% if types.login %}
        , CAST(SUM(CASE WHEN step = {{ loop.index }} THEN logins ELSE 0 END) AS BIGINT) AS logins_w{{ loop.index }}
{% endif %}
{% if types.session %}
        , SUM(CASE WHEN step = {{ loop.index }} THEN play_seconds ELSE 0 END) / 60.0 AS play_minutes_w{{ loop.index }}
{% endif %}
{% if types.level_up %}
        , CAST(SUM(CASE WHEN step = {{ loop.index }} THEN level_ups ELSE 0 END) AS BIGINT) AS level_ups_w{{ loop.index }}
{% endif %}
        , CAST(SUM(CASE WHEN step = {{ loop.index }} THEN purchases ELSE 0 END) AS BIGINT) AS purchases_w{{ loop.index }}
        , SUM(CASE WHEN step = {{ loop.index }} THEN revenue ELSE 0 END) AS revenue_w{{ loop.index }}
{% endfor %}
    FROM (
        SELECT
            *,
            CAST(FLOOR((DATE_DIFF('day', CAST(dt AS DATE), DATE {{ cutoff | lit }}) - 1) / {{ step_days }}.0) AS BIGINT) + 1 AS step
        FROM days
        WHERE dt >= {{ recent_start | lit }}
    ) stepped
    GROUP BY player_id
),
lifetime AS (
    -- the whole-history totals, from the summary. Standard deviations come from exact sums:
    -- n * sum(x^2) - sum(x)^2 is computed in DECIMAL / BIGINT, so it is never negative and a
    -- constant series gives exactly 0 (revenue's: of the revenue rounded to a millionth)
    SELECT
        player_id,
        first_active_dt,
        last_active_dt,
        first_purchase_dt,
        last_purchase_dt,
        active_days AS active_days_total,
{% if types.login %}
        logins AS logins_total,
{% endif %}
{% if types.session %}
        sessions AS sessions_total,
        CAST(play_seconds AS DOUBLE) / 60.0 AS play_minutes_total,
{% endif %}
{% if types.level_up %}
        level_ups AS level_ups_total,
{% endif %}
{% if col.level %}
        max_level,
{% endif %}
        purchases AS purchases_total,
        purchase_days AS purchase_days_total,
        CAST(revenue AS DOUBLE) AS revenue_total,
        max_daily_revenue,
        CASE WHEN purchase_days > 1 THEN SQRT(CAST(purchase_days * rounded_revenue_sq - rounded_revenue * rounded_revenue AS DOUBLE)
                                              / (purchase_days * (purchase_days - 1))) END AS purchase_day_revenue_std,
        CASE WHEN purchase_gaps > 0 THEN CAST(purchase_gap_sum AS DOUBLE) / purchase_gaps END AS purchase_gap_mean,
        CASE WHEN purchase_gaps > 1 THEN SQRT(CAST(purchase_gaps * purchase_gap_sq - purchase_gap_sum * purchase_gap_sum AS DOUBLE)
                                              / (purchase_gaps * (purchase_gaps - 1))) END AS purchase_gap_std,
        purchase_gap_min,
        purchase_gap_max,
        purchase_gap_last
    FROM summary
),
purchase_days AS (
    SELECT
        player_id,
        DATE_DIFF('day', LAG(CAST(dt AS DATE)) OVER (PARTITION BY player_id ORDER BY dt), CAST(dt AS DATE)) AS gap
    FROM days
    WHERE purchases > 0
),
gap_ranks AS (
    SELECT
        player_id,
        gap,
        ROW_NUMBER() OVER (PARTITION BY player_id ORDER BY gap) AS rn,
        COUNT(*) OVER (PARTITION BY player_id) AS n
    FROM purchase_days
    WHERE gap IS NOT NULL
),
gap_medians AS (
    -- the exact median: the middle row, or the mean of the two middle rows
    SELECT player_id, AVG(gap) AS purchase_gap_median
    FROM gap_ranks
    WHERE rn IN (FLOOR((n + 1) / 2.0), FLOOR((n + 2) / 2.0))
    GROUP BY player_id
)
SELECT
    p.player_id,
{% for name in attributes %}
    COALESCE(i.attr_{{ name }}, 'unknown') AS attr_{{ name }},
{% endfor %}
{% if players %}
    DATE_DIFF('day', COALESCE(CAST(i.install_time AS DATE), CAST(l.first_active_dt AS DATE)), DATE {{ cutoff | lit }}) AS days_since_install,
{% else %}
    DATE_DIFF('day', CAST(l.first_active_dt AS DATE), DATE {{ cutoff | lit }}) AS days_since_install,
{% endif %}
    DATE_DIFF('day', CAST(l.last_active_dt AS DATE), DATE {{ cutoff | lit }}) AS days_since_last_active,
    DATE_DIFF('day', CAST(l.first_purchase_dt AS DATE), DATE {{ cutoff | lit }}) AS days_since_first_purchase,
    DATE_DIFF('day', CAST(l.last_purchase_dt AS DATE), DATE {{ cutoff | lit }}) AS days_since_last_purchase,
    l.active_days_total,
    p.active_days_window,
{% if types.login %}
    l.logins_total,
{% endif %}
{% if types.session %}
    l.sessions_total,
    l.play_minutes_total,
{% endif %}
{% if types.level_up %}
    l.level_ups_total,
{% endif %}
{% if col.level %}
    l.max_level,
{% endif %}
    l.purchases_total,
    l.purchase_days_total,
    l.revenue_total,
    l.max_daily_revenue,
    CASE WHEN l.purchases_total > 0 THEN l.revenue_total / l.purchases_total END AS revenue_per_purchase,
{% if col.event_type %}
    CAST(l.purchase_days_total AS DOUBLE) / l.active_days_total AS purchase_day_rate,
{% endif %}
    l.revenue_total / l.active_days_total AS revenue_per_active_day,
    -- the whole history in the buy-till-you-die summary (frequency x, recency t_x, age T, in
    -- days, counted in purchase days so same-day repeat orders are one transaction) and the
    -- spend per purchase day, the inputs of BG/NBD + Gamma-Gamma (ltv.models.btyd)
    CASE WHEN l.purchase_days_total > 0 THEN l.purchase_days_total - 1 END AS btyd_frequency,
    DATE_DIFF('day', CAST(l.first_purchase_dt AS DATE), CAST(l.last_purchase_dt AS DATE)) AS btyd_recency_days,
    CASE WHEN l.purchase_days_total > 0 THEN l.revenue_total / l.purchase_days_total END AS purchase_day_revenue_mean,
    l.purchase_day_revenue_std,
    l.purchase_gap_mean,
    l.purchase_gap_std,
    l.purchase_gap_min,
    l.purchase_gap_max,
    l.purchase_gap_last,
    gm.purchase_gap_median,
    gm.purchase_gap_median - DATE_DIFF('day', CAST(l.last_purchase_dt AS DATE), DATE {{ cutoff | lit }}) AS days_to_median_gap,
    l.purchase_gap_mean - DATE_DIFF('day', CAST(l.last_purchase_dt AS DATE), DATE {{ cutoff | lit }}) AS days_to_usual_gap,
    l.purchase_gap_last - DATE_DIFF('day', CAST(l.last_purchase_dt AS DATE), DATE {{ cutoff | lit }}) AS days_to_last_gap,
{% for s in steps %}
    p.active_days_w{{ loop.index }} AS active_days_w{{ loop.index }},
{% if types.login %}
    p.logins_w{{ loop.index }} AS logins_w{{ loop.index }},
{% endif %}
{% if types.session %}
    p.play_minutes_w{{ loop.index }} AS play_minutes_w{{ loop.index }},
{% endif %}
{% if types.level_up %}
    p.level_ups_w{{ loop.index }} AS level_ups_w{{ loop.index }},
{% endif %}
    p.purchases_w{{ loop.index }} AS purchases_w{{ loop.index }},
    p.revenue_w{{ loop.index }} AS revenue_w{{ loop.index }},
{% endfor %}
    {{ calendar.weekday }} AS cutoff_weekday,
    {{ calendar.month }} AS cutoff_month,
    {{ calendar.day }} AS cutoff_day_of_month,
    {{ cutoff | lit }} AS cutoff
FROM recent p
JOIN lifetime l ON l.player_id = p.player_id
{% if players %}
LEFT JOIN installs i ON i.player_id = p.player_id
{% endif %}
LEFT JOIN gap_medians gm ON gm.player_id = p.player_id
WHERE p.active_days_window > 0
{% if players %}
  AND (i.install_time IS NULL OR i.install_time < TIMESTAMP {{ cutoff_ts | lit }})
{% endif %}
