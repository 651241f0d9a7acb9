/* One split of a dataset version: features joined with labels at each of its cutoffs. */
SELECT
  f.*,
  l.ltv,
  l.payer,
  l.next_purchase_day,
  l.churned,
  'train' AS split
FROM features AS f
JOIN labels AS l
  ON l.player_id = f.player_id AND l.cutoff = f.cutoff
WHERE
  f.cutoff IN ('2025-05-26', '2025-06-02')
