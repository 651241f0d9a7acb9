/* Daily aggregates: one row per player per active day, from the raw events of [start, end]. */
/* Events whose timestamp is not on their partition's day are left out (validation reports */
/* them), exact duplicate rows count once, and rows without a player id are dropped. */
WITH raw AS (
  SELECT DISTINCT
    CAST("user_id" AS VARCHAR) AS player_id,
    CAST("event_ts" AS TIMESTAMP) AS event_time,
    "event_name" AS event_type,
    CAST("revenue_usd" AS DOUBLE) AS revenue,
    CAST("level" AS BIGINT) AS level,
    CAST("session_seconds" AS DOUBLE) AS session_seconds,
    dt
  FROM events
  WHERE
    dt BETWEEN '2025-06-01' AND '2025-06-01'
    AND NOT "user_id" IS NULL
    AND CAST("event_ts" AS DATE) = CAST(dt AS DATE)
)
SELECT
  player_id,
  CAST(SUM(CASE WHEN event_type IN ('login') THEN 1 ELSE 0 END) AS BIGINT) AS logins,
  CAST(SUM(CASE WHEN event_type IN ('session_end') THEN 1 ELSE 0 END) AS BIGINT) AS sessions,
  COALESCE(SUM(CASE WHEN event_type IN ('session_end') THEN session_seconds END), 0.0) AS play_seconds,
  CAST(SUM(CASE WHEN event_type IN ('level_up') THEN 1 ELSE 0 END) AS BIGINT) AS level_ups,
  MAX(level) AS max_level,
  CAST(SUM(CASE WHEN event_type IN ('iap_purchase') THEN 1 ELSE 0 END) AS BIGINT) AS purchases,
  COALESCE(SUM(CASE WHEN event_type IN ('iap_purchase') THEN revenue END), 0.0) AS revenue,
  COUNT(*) AS events,
  dt
FROM raw
GROUP BY
  player_id,
  dt
