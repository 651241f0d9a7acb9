-- The running whole-history summary at cutoff {{ cutoff }}: per player, the mergeable aggregates
-- of every player_day row before the cutoff (dt < cutoff), from which features.sql derives the
-- whole-history features without rescanning history.
{% if previous %}
-- Incremental: the summary at {{ previous }} merged with the player_day rows of
-- [{{ previous }}, {{ cutoff }}); without a previous summary the same query reads every row
-- before the cutoff, and both give identical rows (tests/test_summary.py).
{% else %}
-- From scratch: every player_day row before the cutoff (no usable previous summary).
{% endif %}
-- Merging must be exact, so every sum is exact: counts are BIGINT, revenue DECIMAL(38, 9) and
-- play time DECIMAL(38, 9) seconds. Floating-point sums would depend on the order of addition, so
-- a summary merged week by week would drift from one built in one pass. The standard deviation
-- of purchase-day revenue is kept as the sum and the sum of squares of the revenue rounded to a
-- millionth (DECIMAL(38, 6) and (38, 12)): its n * sum(x^2) - sum(x)^2 is then exact with 26
-- integer digits to spare (at 9 decimals, squares would leave 20, too few for a whale in a
-- currency of small units). Dates are the 'YYYY-MM-DD' strings of player_day's dt.
{% macro amount(expr, scale=9) %}CAST({{ expr }} AS DECIMAL(38, {{ scale }})){% endmacro %}
{% macro total(name, source="n") %}{% if previous %}COALESCE(p.{{ name }}, 0) + {% endif %}COALESCE({{ source }}.{{ name }}, 0){% endmacro %}
{% macro earliest(name) %}{% if previous %}COALESCE(p.{{ name }}, n.{{ name }}){% else %}n.{{ name }}{% endif %}{% endmacro %}
{% macro latest(name, source="n") %}{% if previous %}COALESCE({{ source }}.{{ name }}, p.{{ name }}){% else %}{{ source }}.{{ name }}{% endif %}{% endmacro %}
{# GREATEST/LEAST return NULL on any NULL in Trino and skip NULLs in DuckDB: spelled out instead #}
{% macro largest(name, source="n") %}{% if previous %}CASE WHEN p.{{ name }} IS NULL OR {{ source }}.{{ name }} > p.{{ name }} THEN {{ source }}.{{ name }} ELSE p.{{ name }} END{% else %}{{ source }}.{{ name }}{% endif %}{% endmacro %}
{% macro smallest(name, source="n") %}{% if previous %}CASE WHEN p.{{ name }} IS NULL OR {{ source }}.{{ name }} < p.{{ name }} THEN {{ source }}.{{ name }} ELSE p.{{ name }} END{% else %}{{ source }}.{{ name }}{% endif %}{% endmacro %}
WITH days AS (
    SELECT * FROM player_day WHERE {% if previous %}dt >= {{ previous | lit }} AND {% endif %}dt < {{ cutoff | lit }}
),
{% if previous %}
p AS (
    SELECT * FROM player_summary WHERE cutoff = {{ previous | lit }}
),
{% endif %}
n AS (
    SELECT
        player_id,
        COUNT(*) AS active_days,
{% if types.login %}
        SUM(logins) AS logins,
{% endif %}
{% if types.session %}
        SUM(sessions) AS sessions,
        SUM({{ amount("play_seconds") }}) AS play_seconds,
{% endif %}
{% if types.level_up %}
        SUM(level_ups) AS level_ups,
{% endif %}
{% if col.level %}
        MAX(max_level) AS max_level,
{% endif %}
        SUM(purchases) AS purchases,
        SUM(CASE WHEN purchases > 0 THEN 1 ELSE 0 END) AS purchase_days,
        SUM({{ amount("revenue") }}) AS revenue,
        SUM(CASE WHEN purchases > 0 THEN {{ amount("revenue", 6) }} END) AS rounded_revenue,
        SUM(CASE WHEN purchases > 0 THEN {{ amount("revenue", 6) }} * {{ amount("revenue", 6) }} END) AS rounded_revenue_sq,
        MAX(revenue) AS max_daily_revenue,
        MIN(dt) AS first_active_dt,
        MAX(dt) AS last_active_dt,
        MIN(CASE WHEN purchases > 0 THEN dt END) AS first_purchase_dt,
        MAX(CASE WHEN purchases > 0 THEN dt END) AS last_purchase_dt
    FROM days
    GROUP BY player_id
),
purchase_days AS (
    -- each purchase day and the days since the one before; an incremental build puts the previous
    -- summary's last purchase day first in each player's chain, so the gap across the boundary
    -- is counted here, once
    SELECT
        player_id,
        dt,
        DATE_DIFF('day', LAG(CAST(dt AS DATE)) OVER (PARTITION BY player_id ORDER BY dt), CAST(dt AS DATE)) AS gap
    FROM (
        SELECT player_id, dt FROM days WHERE purchases > 0
{% if previous %}
        UNION ALL
        SELECT player_id, last_purchase_dt AS dt FROM p WHERE last_purchase_dt IS NOT NULL
{% endif %}
    ) buys
),
g AS (
    SELECT
        player_id,
        COUNT(*) AS purchase_gaps,
        SUM(gap) AS purchase_gap_sum,
        SUM(gap * gap) AS purchase_gap_sq,
        MIN(gap) AS purchase_gap_min,
        MAX(gap) AS purchase_gap_max,
        MAX_BY(gap, dt) AS purchase_gap_last
    FROM purchase_days
    WHERE gap IS NOT NULL
    GROUP BY player_id
)
SELECT
    {% if previous %}COALESCE(n.player_id, p.player_id){% else %}n.player_id{% endif %} AS player_id,
    CAST({{ total("active_days") }} AS BIGINT) AS active_days,
{% if types.login %}
    CAST({{ total("logins") }} AS BIGINT) AS logins,
{% endif %}
{% if types.session %}
    CAST({{ total("sessions") }} AS BIGINT) AS sessions,
    CAST({{ total("play_seconds") }} AS DECIMAL(38, 9)) AS play_seconds,
{% endif %}
{% if types.level_up %}
    CAST({{ total("level_ups") }} AS BIGINT) AS level_ups,
{% endif %}
{% if col.level %}
    CAST({{ largest("max_level") }} AS BIGINT) AS max_level,
{% endif %}
    CAST({{ total("purchases") }} AS BIGINT) AS purchases,
    CAST({{ total("purchase_days") }} AS BIGINT) AS purchase_days,
    CAST({{ total("revenue") }} AS DECIMAL(38, 9)) AS revenue,
    CAST({{ total("rounded_revenue") }} AS DECIMAL(38, 6)) AS rounded_revenue,
    CAST({{ total("rounded_revenue_sq") }} AS DECIMAL(38, 12)) AS rounded_revenue_sq,
    CAST({{ largest("max_daily_revenue") }} AS DOUBLE) AS max_daily_revenue,
    CAST({{ earliest("first_active_dt") }} AS VARCHAR) AS first_active_dt,
    CAST({{ latest("last_active_dt") }} AS VARCHAR) AS last_active_dt,
    CAST({{ earliest("first_purchase_dt") }} AS VARCHAR) AS first_purchase_dt,
    CAST({{ latest("last_purchase_dt") }} AS VARCHAR) AS last_purchase_dt,
    CAST({{ total("purchase_gaps", "g") }} AS BIGINT) AS purchase_gaps,
    CAST({{ total("purchase_gap_sum", "g") }} AS BIGINT) AS purchase_gap_sum,
    CAST({{ total("purchase_gap_sq", "g") }} AS BIGINT) AS purchase_gap_sq,
    CAST({{ smallest("purchase_gap_min", "g") }} AS BIGINT) AS purchase_gap_min,
    CAST({{ largest("purchase_gap_max", "g") }} AS BIGINT) AS purchase_gap_max,
    CAST({{ latest("purchase_gap_last", "g") }} AS BIGINT) AS purchase_gap_last,
    {{ cutoff | lit }} AS cutoff
FROM n
{% if previous %}
FULL OUTER JOIN p ON p.player_id = n.player_id
LEFT JOIN g ON g.player_id = COALESCE(n.player_id, p.player_id)
{% else %}
LEFT JOIN g ON g.player_id = n.player_id
{% endif %}
