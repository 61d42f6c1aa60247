-- Wide-row update: ~2 kB out-of-line values rewritten, 100 rows per statement.
DO $$
DECLARE d record;
BEGIN
  FOR run IN 1..12 LOOP
    UPDATE pwb_cal_wide SET body = repeat(md5((id + run)::text), 60) WHERE id <= 100;
    SELECT * INTO d FROM pwb.recent_decisions(1);
    INSERT INTO pwb_calibration VALUES ('wide_row_update', run, d.predicted_wal_bytes, d.actual_wal_bytes);
  END LOOP;
END $$;
