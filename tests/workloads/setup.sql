-- Tables for the pg_wal_budget calibration workloads (recreated each run).
DROP TABLE IF EXISTS pwb_cal_insert, pwb_cal_hot, pwb_cal_indexed, pwb_cal_wide, pwb_cal_copy, pwb_cal_index;
CREATE TABLE pwb_cal_insert (id bigserial PRIMARY KEY, v int, note text);
CREATE TABLE pwb_cal_hot (id int PRIMARY KEY, counter int, pad text) WITH (fillfactor = 50);
INSERT INTO pwb_cal_hot SELECT g, 0, repeat('p', 50) FROM generate_series(1, 2000) g;
CREATE TABLE pwb_cal_indexed (id int PRIMARY KEY, k int, pad text);
CREATE INDEX pwb_cal_indexed_k ON pwb_cal_indexed (k);
INSERT INTO pwb_cal_indexed SELECT g, g, repeat('p', 50) FROM generate_series(1, 2000) g;
CREATE TABLE pwb_cal_wide (id int PRIMARY KEY, body text);
ALTER TABLE pwb_cal_wide ALTER COLUMN body SET STORAGE EXTERNAL;
INSERT INTO pwb_cal_wide SELECT g, repeat(md5(g::text), 60) FROM generate_series(1, 500) g;
CREATE TABLE pwb_cal_copy (id int, payload text);
CREATE TABLE pwb_cal_index (id int, k int);
INSERT INTO pwb_cal_index SELECT g, (g * 7919) % 100000 FROM generate_series(1, 50000) g;
CHECKPOINT;
-- Results: one row per run, taken from the decision of the statement just run.
DROP TABLE IF EXISTS pwb_calibration;
CREATE TEMP TABLE pwb_calibration (workload text, run int, predicted bigint, actual bigint);
CREATE OR REPLACE FUNCTION pg_temp.pwb_record(workload text, run int) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO pwb_calibration
    SELECT workload, run, predicted_wal_bytes, actual_wal_bytes
      FROM pwb.recent_decisions(1)
$$;
