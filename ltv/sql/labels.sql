-- Labels at cutoff {{ cutoff }} for the scored population (players active in
-- [{{ window_start }}, {{ cutoff }})). Labels see only [cutoff, cutoff + horizon):
--   ltv                revenue in [cutoff, {{ ltv_end }})
--   payer              ltv > 0
--   next_purchase_day  d in 1..{{ purchase_days }} of the first purchase (day 1 = the cutoff day); 0 = none
--   churned            1 if no active day in [cutoff, {{ ltv_end }})
WITH population AS (
    SELECT DISTINCT player_id
    FROM player_day
    WHERE dt >= {{ window_start | lit }} AND dt < {{ cutoff | lit }}
),
future AS (
    SELECT player_id, dt, revenue, purchases
    FROM player_day
    WHERE dt >= {{ cutoff | lit }} AND dt < {{ label_end | lit }}
)
SELECT
    p.player_id,
    COALESCE(SUM(CASE WHEN f.dt < {{ ltv_end | lit }} THEN f.revenue END), 0.0) AS ltv,
    CASE WHEN COALESCE(SUM(CASE WHEN f.dt < {{ ltv_end | lit }} THEN f.revenue END), 0.0) > 0 THEN 1 ELSE 0 END AS payer,
    COALESCE(MIN(CASE WHEN f.purchases > 0 AND f.dt < {{ purchase_end | lit }}
                      THEN DATE_DIFF('day', DATE {{ cutoff | lit }}, CAST(f.dt AS DATE)) + 1 END), 0) AS next_purchase_day,
    CASE WHEN COUNT(CASE WHEN f.dt < {{ ltv_end | lit }} THEN 1 END) = 0 THEN 1 ELSE 0 END AS churned,
    {{ cutoff | lit }} AS cutoff
FROM population p
LEFT JOIN future f ON f.player_id = p.player_id
GROUP BY p.player_id
