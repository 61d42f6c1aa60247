-- HOT update: non-indexed column, fillfactor 50, 500 rows per statement.
DO $$
DECLARE d record;
BEGIN
  FOR run IN 1..12 LOOP
    UPDATE pwb_cal_hot SET counter = counter + 1 WHERE id <= 500;
    SELECT * INTO d FROM pwb.recent_decisions(1);
    INSERT INTO pwb_calibration VALUES ('hot_update', run, d.predicted_wal_bytes, d.actual_wal_bytes);
  END LOOP;
END $$;
