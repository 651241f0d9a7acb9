/* Daily aggregates: one row per player per active day, from the raw events of [start, end]. */
/* Events whose timestamp is not on their partition's day are left out (validation reports */
/* them), exact duplicate rows count once, and rows without a player id are dropped. */
WITH raw AS (
  SELECT DISTINCT
    CAST("PlayerId" AS BIGINT) AS player_id,
    CAST("EventTime" AS TIMESTAMP) AS event_time,
    "Action" AS event_type,
    CAST("Amount" AS DOUBLE) * CASE "Currency"
      WHEN 'BRL'
      THEN 0.18
      WHEN 'EUR'
      THEN 1.08
      WHEN 'GBP'
      THEN 1.27
      WHEN 'INR'
      THEN 0.012
      WHEN 'JPY'
      THEN 0.0067
      WHEN 'KRW'
      THEN 0.00073
      WHEN 'USD'
      THEN 1.0
    END AS revenue,
    CAST("PlayerLevel" AS BIGINT) AS level,
    CAST("SessionMs" AS DOUBLE) / 1000.0 AS session_seconds,
    dt
  FROM game_events
  WHERE
    dt BETWEEN '2025-06-01' AND '2025-06-01'
    AND NOT "PlayerId" IS NULL
    AND CAST("EventTime" AS DATE) = CAST(dt AS DATE)
)
SELECT
  player_id,
  CAST(SUM(CASE WHEN event_type IN ('AppOpen', 'Resume') THEN 1 ELSE 0 END) AS BIGINT) AS logins,
  CAST(SUM(CASE WHEN event_type IN ('SessionEnd') THEN 1 ELSE 0 END) AS BIGINT) AS sessions,
  COALESCE(SUM(CASE WHEN event_type IN ('SessionEnd') THEN session_seconds END), 0.0) AS play_seconds,
  CAST(SUM(CASE WHEN event_type IN ('ChapterComplete') THEN 1 ELSE 0 END) AS BIGINT) AS level_ups,
  MAX(level) AS max_level,
  CAST(SUM(CASE WHEN event_type IN ('StorePurchase') THEN 1 ELSE 0 END) AS BIGINT) AS purchases,
  COALESCE(SUM(CASE WHEN event_type IN ('StorePurchase') THEN revenue END), 0.0) AS revenue,
  COUNT(*) AS events,
  dt
FROM raw
GROUP BY
  player_id,
  dt
