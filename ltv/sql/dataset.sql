-- One split of a dataset version: features joined with labels at each of its cutoffs.
SELECT f.*, l.ltv, l.payer, l.next_purchase_day, l.churned, {{ split | lit }} AS split
FROM features f
JOIN labels l ON l.player_id = f.player_id AND l.cutoff = f.cutoff
WHERE f.cutoff IN {{ cutoffs | inlist }}
