-- CREATE INDEX on 50,000 rows, dropped again after each run.
DO $$
DECLARE d record;
BEGIN
  FOR run IN 1..12 LOOP
    EXECUTE 'CREATE INDEX pwb_cal_index_k ON pwb_cal_index (k)';
    SELECT * INTO d FROM pwb.recent_decisions(1);
    INSERT INTO pwb_calibration VALUES ('create_index', run, d.predicted_wal_bytes, d.actual_wal_bytes);
    EXECUTE 'DROP INDEX pwb_cal_index_k';
  END LOOP;
END $$;
