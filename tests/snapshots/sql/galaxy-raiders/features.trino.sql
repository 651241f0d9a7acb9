/* Features at cutoff 2025-06-02: only player_day rows before the cutoff are read (dt < cutoff), */
/* so no feature can see an event at or after it. Population: players with an active day in */
/* [2025-05-05, 2025-06-02) who installed before the cutoff (or have no install record). */
/* History steps: step w1 is the most recent 7 days, up to w8. */
WITH history AS (
  SELECT
    *
  FROM player_day
  WHERE
    dt < '2025-06-02'
), population AS (
  SELECT DISTINCT
    player_id
  FROM history
  WHERE
    dt >= '2025-05-05'
), installs AS (
  SELECT
    CAST("user_id" AS VARCHAR) AS player_id,
    MIN(CAST("install_ts" AS TIMESTAMP)) AS install_time,
    MIN("country") AS attr_country,
    MIN("platform") AS attr_platform,
    MIN("acquisition_channel") AS attr_channel
  FROM players
  WHERE
    dt < '2025-06-02' AND NOT "user_id" IS NULL
  GROUP BY
    1
), lifetime AS (
  SELECT
    player_id,
    COUNT(*) AS active_days_total,
    CAST(SUM(CASE WHEN dt >= '2025-05-05' THEN 1 ELSE 0 END) AS BIGINT) AS active_days_window,
    CAST(SUM(logins) AS BIGINT) AS logins_total,
    CAST(SUM(sessions) AS BIGINT) AS sessions_total,
    CAST(SUM(play_seconds) AS DOUBLE) / 60.0 AS play_minutes_total,
    CAST(SUM(level_ups) AS BIGINT) AS level_ups_total,
    MAX(max_level) AS max_level,
    CAST(SUM(purchases) AS BIGINT) AS purchases_total,
    CAST(SUM(CASE WHEN purchases > 0 THEN 1 ELSE 0 END) AS BIGINT) AS purchase_days_total,
    SUM(revenue) AS revenue_total,
    MAX(revenue) AS max_daily_revenue,
    MIN(dt) AS first_active_dt,
    MAX(dt) AS last_active_dt,
    MIN(CASE WHEN purchases > 0 THEN dt END) AS first_purchase_dt,
    MAX(CASE WHEN purchases > 0 THEN dt END) AS last_purchase_dt,
    MAX(CASE WHEN purchases > 0 THEN revenue END) AS max_purchase_day_revenue
  FROM history
  GROUP BY
    player_id
), steps AS (
  SELECT
    player_id,
    CAST(SUM(CASE WHEN dt >= '2025-05-26' AND dt < '2025-06-02' THEN 1 ELSE 0 END) AS BIGINT) AS active_days_w1,
    CAST(SUM(CASE WHEN dt >= '2025-05-26' AND dt < '2025-06-02' THEN logins ELSE 0 END) AS BIGINT) AS logins_w1,
    CAST(SUM(CASE WHEN dt >= '2025-05-26' AND dt < '2025-06-02' THEN play_seconds ELSE 0 END) AS DOUBLE) / 60.0 AS play_minutes_w1,
    CAST(SUM(CASE WHEN dt >= '2025-05-26' AND dt < '2025-06-02' THEN level_ups ELSE 0 END) AS BIGINT) AS level_ups_w1,
    CAST(SUM(CASE WHEN dt >= '2025-05-26' AND dt < '2025-06-02' THEN purchases ELSE 0 END) AS BIGINT) AS purchases_w1,
    SUM(CASE WHEN dt >= '2025-05-26' AND dt < '2025-06-02' THEN revenue ELSE 0 END) AS revenue_w1,
    CAST(SUM(CASE WHEN dt >= '2025-05-19' AND dt < '2025-05-26' THEN 1 ELSE 0 END) AS BIGINT) AS active_days_w2,
    CAST(SUM(CASE WHEN dt >= '2025-05-19' AND dt < '2025-05-26' THEN logins ELSE 0 END) AS BIGINT) AS logins_w2,
    CAST(SUM(CASE WHEN dt >= '2025-05-19' AND dt < '2025-05-26' THEN play_seconds ELSE 0 END) AS DOUBLE) / 60.0 AS play_minutes_w2,
    CAST(SUM(CASE WHEN dt >= '2025-05-19' AND dt < '2025-05-26' THEN level_ups ELSE 0 END) AS BIGINT) AS level_ups_w2,
    CAST(SUM(CASE WHEN dt >= '2025-05-19' AND dt < '2025-05-26' THEN purchases ELSE 0 END) AS BIGINT) AS purchases_w2,
    SUM(CASE WHEN dt >= '2025-05-19' AND dt < '2025-05-26' THEN revenue ELSE 0 END) AS revenue_w2,
    CAST(SUM(CASE WHEN dt >= '2025-05-12' AND dt < '2025-05-19' THEN 1 ELSE 0 END) AS BIGINT) AS active_days_w3,
    CAST(SUM(CASE WHEN dt >= '2025-05-12' AND dt < '2025-05-19' THEN logins ELSE 0 END) AS BIGINT) AS logins_w3,
    CAST(SUM(CASE WHEN dt >= '2025-05-12' AND dt < '2025-05-19' THEN play_seconds ELSE 0 END) AS DOUBLE) / 60.0 AS play_minutes_w3,
    CAST(SUM(CASE WHEN dt >= '2025-05-12' AND dt < '2025-05-19' THEN level_ups ELSE 0 END) AS BIGINT) AS level_ups_w3,
    CAST(SUM(CASE WHEN dt >= '2025-05-12' AND dt < '2025-05-19' THEN purchases ELSE 0 END) AS BIGINT) AS purchases_w3,
    SUM(CASE WHEN dt >= '2025-05-12' AND dt < '2025-05-19' THEN revenue ELSE 0 END) AS revenue_w3,
    CAST(SUM(CASE WHEN dt >= '2025-05-05' AND dt < '2025-05-12' THEN 1 ELSE 0 END) AS BIGINT) AS active_days_w4,
    CAST(SUM(CASE WHEN dt >= '2025-05-05' AND dt < '2025-05-12' THEN logins ELSE 0 END) AS BIGINT) AS logins_w4,
    CAST(SUM(CASE WHEN dt >= '2025-05-05' AND dt < '2025-05-12' THEN play_seconds ELSE 0 END) AS DOUBLE) / 60.0 AS play_minutes_w4,
    CAST(SUM(CASE WHEN dt >= '2025-05-05' AND dt < '2025-05-12' THEN level_ups ELSE 0 END) AS BIGINT) AS level_ups_w4,
    CAST(SUM(CASE WHEN dt >= '2025-05-05' AND dt < '2025-05-12' THEN purchases ELSE 0 END) AS BIGINT) AS purchases_w4,
    SUM(CASE WHEN dt >= '2025-05-05' AND dt < '2025-05-12' THEN revenue ELSE 0 END) AS revenue_w4,
    CAST(SUM(CASE WHEN dt >= '2025-04-28' AND dt < '2025-05-05' THEN 1 ELSE 0 END) AS BIGINT) AS active_days_w5,
    CAST(SUM(CASE WHEN dt >= '2025-04-28' AND dt < '2025-05-05' THEN logins ELSE 0 END) AS BIGINT) AS logins_w5,
    CAST(SUM(CASE WHEN dt >= '2025-04-28' AND dt < '2025-05-05' THEN play_seconds ELSE 0 END) AS DOUBLE) / 60.0 AS play_minutes_w5,
    CAST(SUM(CASE WHEN dt >= '2025-04-28' AND dt < '2025-05-05' THEN level_ups ELSE 0 END) AS BIGINT) AS level_ups_w5,
    CAST(SUM(CASE WHEN dt >= '2025-04-28' AND dt < '2025-05-05' THEN purchases ELSE 0 END) AS BIGINT) AS purchases_w5,
    SUM(CASE WHEN dt >= '2025-04-28' AND dt < '2025-05-05' THEN revenue ELSE 0 END) AS revenue_w5,
    CAST(SUM(CASE WHEN dt >= '2025-04-21' AND dt < '2025-04-28' THEN 1 ELSE 0 END) AS BIGINT) AS active_days_w6,
    CAST(SUM(CASE WHEN dt >= '2025-04-21' AND dt < '2025-04-28' THEN logins ELSE 0 END) AS BIGINT) AS logins_w6,
    CAST(SUM(CASE WHEN dt >= '2025-04-21' AND dt < '2025-04-28' THEN play_seconds ELSE 0 END) AS DOUBLE) / 60.0 AS play_minutes_w6,
    CAST(SUM(CASE WHEN dt >= '2025-04-21' AND dt < '2025-04-28' THEN level_ups ELSE 0 END) AS BIGINT) AS level_ups_w6,
    CAST(SUM(CASE WHEN dt >= '2025-04-21' AND dt < '2025-04-28' THEN purchases ELSE 0 END) AS BIGINT) AS purchases_w6,
    SUM(CASE WHEN dt >= '2025-04-21' AND dt < '2025-04-28' THEN revenue ELSE 0 END) AS revenue_w6,
    CAST(SUM(CASE WHEN dt >= '2025-04-14' AND dt < '2025-04-21' THEN 1 ELSE 0 END) AS BIGINT) AS active_days_w7,
    CAST(SUM(CASE WHEN dt >= '2025-04-14' AND dt < '2025-04-21' THEN logins ELSE 0 END) AS BIGINT) AS logins_w7,
    CAST(SUM(CASE WHEN dt >= '2025-04-14' AND dt < '2025-04-21' THEN play_seconds ELSE 0 END) AS DOUBLE) / 60.0 AS play_minutes_w7,
    CAST(SUM(CASE WHEN dt >= '2025-04-14' AND dt < '2025-04-21' THEN level_ups ELSE 0 END) AS BIGINT) AS level_ups_w7,
    CAST(SUM(CASE WHEN dt >= '2025-04-14' AND dt < '2025-04-21' THEN purchases ELSE 0 END) AS BIGINT) AS purchases_w7,
    SUM(CASE WHEN dt >= '2025-04-14' AND dt < '2025-04-21' THEN revenue ELSE 0 END) AS revenue_w7,
    CAST(SUM(CASE WHEN dt >= '2025-04-07' AND dt < '2025-04-14' THEN 1 ELSE 0 END) AS BIGINT) AS active_days_w8,
    CAST(SUM(CASE WHEN dt >= '2025-04-07' AND dt < '2025-04-14' THEN logins ELSE 0 END) AS BIGINT) AS logins_w8,
    CAST(SUM(CASE WHEN dt >= '2025-04-07' AND dt < '2025-04-14' THEN play_seconds ELSE 0 END) AS DOUBLE) / 60.0 AS play_minutes_w8,
    CAST(SUM(CASE WHEN dt >= '2025-04-07' AND dt < '2025-04-14' THEN level_ups ELSE 0 END) AS BIGINT) AS level_ups_w8,
    CAST(SUM(CASE WHEN dt >= '2025-04-07' AND dt < '2025-04-14' THEN purchases ELSE 0 END) AS BIGINT) AS purchases_w8,
    SUM(CASE WHEN dt >= '2025-04-07' AND dt < '2025-04-14' THEN revenue ELSE 0 END) AS revenue_w8
  FROM history
  WHERE
    dt >= '2025-04-07'
  GROUP BY
    player_id
), purchase_days AS (
  SELECT
    player_id,
    dt,
    DATE_DIFF(
      'DAY',
      DATE_TRUNC('DAY', LAG(CAST(dt AS DATE)) OVER (PARTITION BY player_id ORDER BY dt)),
      DATE_TRUNC('DAY', CAST(dt AS DATE))
    ) AS gap
  FROM history
  WHERE
    purchases > 0
), gap_ranks AS (
  SELECT
    player_id,
    gap,
    ROW_NUMBER() OVER (PARTITION BY player_id ORDER BY gap) AS rn,
    COUNT(*) OVER (PARTITION BY player_id) AS n
  FROM purchase_days
  WHERE
    NOT gap IS NULL
), gap_medians AS (
  /* the exact median: the middle row, or the mean of the two middle rows */
  SELECT
    player_id,
    AVG(gap) AS purchase_gap_median
  FROM gap_ranks
  WHERE
    rn IN (
      FLOOR(CAST((
        n + 1
      ) AS DOUBLE) / 2.0),
      FLOOR(CAST((
        n + 2
      ) AS DOUBLE) / 2.0)
    )
  GROUP BY
    player_id
), gaps AS (
  SELECT
    player_id,
    AVG(gap) AS purchase_gap_mean,
    STDDEV_SAMP(gap) AS purchase_gap_std,
    MIN(gap) AS purchase_gap_min,
    MAX(gap) AS purchase_gap_max,
    MAX_BY(gap, dt) AS purchase_gap_last
  FROM purchase_days
  WHERE
    NOT gap IS NULL
  GROUP BY
    player_id
)
SELECT
  p.player_id,
  COALESCE(i.attr_country, 'unknown') AS attr_country,
  COALESCE(i.attr_platform, 'unknown') AS attr_platform,
  COALESCE(i.attr_channel, 'unknown') AS attr_channel,
  DATE_DIFF(
    'DAY',
    DATE_TRUNC('DAY', COALESCE(CAST(i.install_time AS DATE), CAST(l.first_active_dt AS DATE))),
    DATE_TRUNC('DAY', CAST('2025-06-02' AS DATE))
  ) AS days_since_install,
  DATE_DIFF(
    'DAY',
    DATE_TRUNC('DAY', CAST(l.last_active_dt AS DATE)),
    DATE_TRUNC('DAY', CAST('2025-06-02' AS DATE))
  ) AS days_since_last_active,
  DATE_DIFF(
    'DAY',
    DATE_TRUNC('DAY', CAST(l.first_purchase_dt AS DATE)),
    DATE_TRUNC('DAY', CAST('2025-06-02' AS DATE))
  ) AS days_since_first_purchase,
  DATE_DIFF(
    'DAY',
    DATE_TRUNC('DAY', CAST(l.last_purchase_dt AS DATE)),
    DATE_TRUNC('DAY', CAST('2025-06-02' AS DATE))
  ) AS days_since_last_purchase,
  l.active_days_total,
  l.active_days_window,
  l.logins_total,
  l.sessions_total,
  l.play_minutes_total,
  l.level_ups_total,
  l.max_level,
  l.purchases_total,
  l.purchase_days_total,
  l.revenue_total,
  l.max_daily_revenue,
  CASE
    WHEN l.purchases_total > 0
    THEN CAST(l.revenue_total AS DOUBLE) / l.purchases_total
  END AS revenue_per_purchase,
  CAST(l.purchase_days_total AS DOUBLE) / l.active_days_total AS purchase_day_rate,
  CAST(l.revenue_total AS DOUBLE) / l.active_days_total AS revenue_per_active_day,
  g.purchase_gap_mean,
  g.purchase_gap_std,
  g.purchase_gap_min,
  g.purchase_gap_max,
  g.purchase_gap_last,
  gm.purchase_gap_median,
  gm.purchase_gap_median - DATE_DIFF(
    'DAY',
    DATE_TRUNC('DAY', CAST(l.last_purchase_dt AS DATE)),
    DATE_TRUNC('DAY', CAST('2025-06-02' AS DATE))
  ) AS days_to_median_gap,
  g.purchase_gap_mean - DATE_DIFF(
    'DAY',
    DATE_TRUNC('DAY', CAST(l.last_purchase_dt AS DATE)),
    DATE_TRUNC('DAY', CAST('2025-06-02' AS DATE))
  ) AS days_to_usual_gap,
  g.purchase_gap_last - DATE_DIFF(
    'DAY',
    DATE_TRUNC('DAY', CAST(l.last_purchase_dt AS DATE)),
    DATE_TRUNC('DAY', CAST('2025-06-02' AS DATE))
  ) AS days_to_last_gap,
  COALESCE(s.active_days_w1, 0) AS active_days_w1,
  COALESCE(s.logins_w1, 0) AS logins_w1,
  COALESCE(s.play_minutes_w1, 0.0) AS play_minutes_w1,
  COALESCE(s.level_ups_w1, 0) AS level_ups_w1,
  COALESCE(s.purchases_w1, 0) AS purchases_w1,
  COALESCE(s.revenue_w1, 0.0) AS revenue_w1,
  COALESCE(s.active_days_w2, 0) AS active_days_w2,
  COALESCE(s.logins_w2, 0) AS logins_w2,
  COALESCE(s.play_minutes_w2, 0.0) AS play_minutes_w2,
  COALESCE(s.level_ups_w2, 0) AS level_ups_w2,
  COALESCE(s.purchases_w2, 0) AS purchases_w2,
  COALESCE(s.revenue_w2, 0.0) AS revenue_w2,
  COALESCE(s.active_days_w3, 0) AS active_days_w3,
  COALESCE(s.logins_w3, 0) AS logins_w3,
  COALESCE(s.play_minutes_w3, 0.0) AS play_minutes_w3,
  COALESCE(s.level_ups_w3, 0) AS level_ups_w3,
  COALESCE(s.purchases_w3, 0) AS purchases_w3,
  COALESCE(s.revenue_w3, 0.0) AS revenue_w3,
  COALESCE(s.active_days_w4, 0) AS active_days_w4,
  COALESCE(s.logins_w4, 0) AS logins_w4,
  COALESCE(s.play_minutes_w4, 0.0) AS play_minutes_w4,
  COALESCE(s.level_ups_w4, 0) AS level_ups_w4,
  COALESCE(s.purchases_w4, 0) AS purchases_w4,
  COALESCE(s.revenue_w4, 0.0) AS revenue_w4,
  COALESCE(s.active_days_w5, 0) AS active_days_w5,
  COALESCE(s.logins_w5, 0) AS logins_w5,
  COALESCE(s.play_minutes_w5, 0.0) AS play_minutes_w5,
  COALESCE(s.level_ups_w5, 0) AS level_ups_w5,
  COALESCE(s.purchases_w5, 0) AS purchases_w5,
  COALESCE(s.revenue_w5, 0.0) AS revenue_w5,
  COALESCE(s.active_days_w6, 0) AS active_days_w6,
  COALESCE(s.logins_w6, 0) AS logins_w6,
  COALESCE(s.play_minutes_w6, 0.0) AS play_minutes_w6,
  COALESCE(s.level_ups_w6, 0) AS level_ups_w6,
  COALESCE(s.purchases_w6, 0) AS purchases_w6,
  COALESCE(s.revenue_w6, 0.0) AS revenue_w6,
  COALESCE(s.active_days_w7, 0) AS active_days_w7,
  COALESCE(s.logins_w7, 0) AS logins_w7,
  COALESCE(s.play_minutes_w7, 0.0) AS play_minutes_w7,
  COALESCE(s.level_ups_w7, 0) AS level_ups_w7,
  COALESCE(s.purchases_w7, 0) AS purchases_w7,
  COALESCE(s.revenue_w7, 0.0) AS revenue_w7,
  COALESCE(s.active_days_w8, 0) AS active_days_w8,
  COALESCE(s.logins_w8, 0) AS logins_w8,
  COALESCE(s.play_minutes_w8, 0.0) AS play_minutes_w8,
  COALESCE(s.level_ups_w8, 0) AS level_ups_w8,
  COALESCE(s.purchases_w8, 0) AS purchases_w8,
  COALESCE(s.revenue_w8, 0.0) AS revenue_w8,
  1 AS cutoff_weekday,
  6 AS cutoff_month,
  2 AS cutoff_day_of_month,
  '2025-06-02' AS cutoff
FROM population AS p
JOIN lifetime AS l
  ON l.player_id = p.player_id
LEFT JOIN installs AS i
  ON i.player_id = p.player_id
LEFT JOIN steps AS s
  ON s.player_id = p.player_id
LEFT JOIN gaps AS g
  ON g.player_id = p.player_id
LEFT JOIN gap_medians AS gm
  ON gm.player_id = p.player_id
WHERE
  i.install_time IS NULL
  OR i.install_time < CAST('2025-06-02 00:00:00' AS TIMESTAMP)
