-- Features at cutoff {{ cutoff }}: only player_day rows before the cutoff are read (dt < cutoff),
-- so no feature can see an event at or after it. Population: players with an active day in
-- [{{ window_start }}, {{ cutoff }}) who installed before the cutoff (or have no install record).
-- History steps: step w1 is the most recent {{ step_days }} days, up to w{{ n_steps }}.
WITH history AS (
    SELECT * FROM player_day WHERE dt < {{ cutoff | lit }}
),
population AS (
    SELECT DISTINCT player_id FROM history WHERE dt >= {{ window_start | lit }}
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
lifetime AS (
    SELECT
        player_id,
        COUNT(*) AS active_days_total,
        CAST(SUM(CASE WHEN dt >= {{ window_start | lit }} THEN 1 ELSE 0 END) AS BIGINT) AS active_days_window,
{% if types.login %}
        CAST(SUM(logins) AS BIGINT) AS logins_total,
{% endif %}
{% if types.session %}
        CAST(SUM(sessions) AS BIGINT) AS sessions_total,
        SUM(play_seconds) / 60.0 AS play_minutes_total,
{% endif %}
{% if types.level_up %}
        CAST(SUM(level_ups) AS BIGINT) AS level_ups_total,
{% endif %}
{% if col.level %}
        MAX(max_level) AS max_level,
{% endif %}
        CAST(SUM(purchases) AS BIGINT) AS purchases_total,
        CAST(SUM(CASE WHEN purchases > 0 THEN 1 ELSE 0 END) AS BIGINT) AS purchase_days_total,
        SUM(revenue) AS revenue_total,
        MAX(revenue) AS max_daily_revenue,
        MIN(dt) AS first_active_dt,
        MAX(dt) AS last_active_dt,
        MIN(CASE WHEN purchases > 0 THEN dt END) AS first_purchase_dt,
        MAX(CASE WHEN purchases > 0 THEN dt END) AS last_purchase_dt,
        MAX(CASE WHEN purchases > 0 THEN revenue END) AS max_purchase_day_revenue,
        STDDEV_SAMP(CASE WHEN purchases > 0 THEN revenue END) AS purchase_day_revenue_std
    FROM history
    GROUP BY player_id
),
steps AS (
    -- each row's history step once (1 = the most recent step_days), then one pass of sums
    SELECT
        player_id
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
        FROM history
        WHERE dt >= {{ steps_start | lit }}
    ) stepped
    GROUP BY player_id
),
purchase_days AS (
    SELECT
        player_id,
        dt,
        DATE_DIFF('day', LAG(CAST(dt AS DATE)) OVER (PARTITION BY player_id ORDER BY dt), CAST(dt AS DATE)) AS gap
    FROM history
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
),
gaps AS (
    SELECT
        player_id,
        AVG(gap) AS purchase_gap_mean,
        STDDEV_SAMP(gap) AS purchase_gap_std,
        MIN(gap) AS purchase_gap_min,
        MAX(gap) AS purchase_gap_max,
        MAX_BY(gap, dt) AS purchase_gap_last
    FROM purchase_days
    WHERE gap IS NOT NULL
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
    l.active_days_window,
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
    g.purchase_gap_mean,
    g.purchase_gap_std,
    g.purchase_gap_min,
    g.purchase_gap_max,
    g.purchase_gap_last,
    gm.purchase_gap_median,
    gm.purchase_gap_median - DATE_DIFF('day', CAST(l.last_purchase_dt AS DATE), DATE {{ cutoff | lit }}) AS days_to_median_gap,
    g.purchase_gap_mean - DATE_DIFF('day', CAST(l.last_purchase_dt AS DATE), DATE {{ cutoff | lit }}) AS days_to_usual_gap,
    g.purchase_gap_last - DATE_DIFF('day', CAST(l.last_purchase_dt AS DATE), DATE {{ cutoff | lit }}) AS days_to_last_gap,
{% for s in steps %}
    COALESCE(s.active_days_w{{ loop.index }}, 0) AS active_days_w{{ loop.index }},
{% if types.login %}
    COALESCE(s.logins_w{{ loop.index }}, 0) AS logins_w{{ loop.index }},
{% endif %}
{% if types.session %}
    COALESCE(s.play_minutes_w{{ loop.index }}, 0.0) AS play_minutes_w{{ loop.index }},
{% endif %}
{% if types.level_up %}
    COALESCE(s.level_ups_w{{ loop.index }}, 0) AS level_ups_w{{ loop.index }},
{% endif %}
    COALESCE(s.purchases_w{{ loop.index }}, 0) AS purchases_w{{ loop.index }},
    COALESCE(s.revenue_w{{ loop.index }}, 0.0) AS revenue_w{{ loop.index }},
{% endfor %}
    {{ calendar.weekday }} AS cutoff_weekday,
    {{ calendar.month }} AS cutoff_month,
    {{ calendar.day }} AS cutoff_day_of_month,
    {{ cutoff | lit }} AS cutoff
FROM population p
JOIN lifetime l ON l.player_id = p.player_id
{% if players %}
LEFT JOIN installs i ON i.player_id = p.player_id
{% endif %}
LEFT JOIN steps s ON s.player_id = p.player_id
LEFT JOIN gaps g ON g.player_id = p.player_id
LEFT JOIN gap_medians gm ON gm.player_id = p.player_id
{% if players %}
WHERE i.install_time IS NULL OR i.install_time < TIMESTAMP {{ cutoff_ts | lit }}
{% endif %}
