-- pg_wal_budget calibration: runs each workload 12 times and reports
-- predicted WAL, actual WAL, absolute error and error ratio, overall and
-- after warm-up (runs 4-12). Run as a superuser in a scratch database with
-- pg_wal_budget preloaded and compute_query_id = on:
--   psql -d scratch -f tests/workloads/calibration_summary.sql
\set ON_ERROR_STOP on
CREATE EXTENSION IF NOT EXISTS pg_wal_budget;
\ir setup.sql
\ir insert_heavy.sql
\ir hot_update.sql
\ir indexed_update.sql
\ir wide_row_update.sql
\ir copy.sql
\ir create_index.sql

\echo 'Per run:'
SELECT workload, run, predicted, actual,
       abs(predicted - actual) AS absolute_error,
       round(abs(predicted - actual)::numeric / greatest(actual, 1), 3) AS error_ratio
  FROM pwb_calibration ORDER BY workload, run;

\echo 'Summary (warm-up = runs 1-3 excluded):'
SELECT workload,
       count(*) AS runs,
       round(avg(predicted)) AS avg_predicted,
       round(avg(actual)) AS avg_actual,
       round(avg(abs(predicted - actual))) AS avg_absolute_error,
       round((percentile_cont(0.5) WITHIN GROUP (
             ORDER BY abs(predicted - actual)::float8 / greatest(actual, 1)))::numeric, 3) AS median_error_ratio
  FROM pwb_calibration WHERE run > 3
 GROUP BY workload
UNION ALL
SELECT 'ALL', count(*), round(avg(predicted)), round(avg(actual)), round(avg(abs(predicted - actual))),
       round((percentile_cont(0.5) WITHIN GROUP (
             ORDER BY abs(predicted - actual)::float8 / greatest(actual, 1)))::numeric, 3)
  FROM pwb_calibration WHERE run > 3
 ORDER BY 1;
