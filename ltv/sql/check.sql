-- Data validation check {{ name }} on {{ table }} partition dt={{ day }}: offending rows.
SELECT *
FROM {{ table }}
WHERE dt = {{ day | lit }}
  AND ({{ condition }})
