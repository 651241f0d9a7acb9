-- Data validation check {{ check }} on {{ table }} partition dt={{ day }}: offending rows.
SELECT *
FROM {{ table }}
WHERE dt = {{ day | lit }}
  AND ({{ condition }})
