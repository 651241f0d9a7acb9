/* Labels at cutoff 2025-06-02 for the scored population (players active in */
/* [2025-05-05, 2025-06-02)). Labels see only [cutoff, cutoff + horizon): */
/*   ltv                revenue in [cutoff, 2025-06-30) */
/*   payer              ltv > 0 */
/*   next_purchase_day  d in 1..16 of the first purchase (day 1 = the cutoff day); 0 = none */
/*   churned            1 if no active day in [cutoff, 2025-06-30) */
WITH population AS (
  SELECT DISTINCT
    player_id
  FROM player_day
  WHERE
    dt >= '2025-05-05' AND dt < '2025-06-02'
), future AS (
  SELECT
    player_id,
    dt,
    revenue,
    purchases
  FROM player_day
  WHERE
    dt >= '2025-06-02' AND dt < '2025-06-30'
)
SELECT
  p.player_id,
  COALESCE(SUM(CASE WHEN f.dt < '2025-06-30' THEN f.revenue END), 0.0) AS ltv,
  CASE
    WHEN COALESCE(SUM(CASE WHEN f.dt < '2025-06-30' THEN f.revenue END), 0.0) > 0
    THEN 1
    ELSE 0
  END AS payer,
  COALESCE(
    MIN(
      CASE
        WHEN f.purchases > 0 AND f.dt < '2025-06-18'
        THEN DATE_DIFF(
          'DAY',
          DATE_TRUNC('DAY', CAST('2025-06-02' AS DATE)),
          DATE_TRUNC('DAY', CAST(f.dt AS DATE))
        ) + 1
      END
    ),
    0
  ) AS next_purchase_day,
  CASE WHEN COUNT(CASE WHEN f.dt < '2025-06-30' THEN 1 END) = 0 THEN 1 ELSE 0 END AS churned,
  '2025-06-02' AS cutoff
FROM population AS p
LEFT JOIN future AS f
  ON f.player_id = p.player_id
GROUP BY
  p.player_id
