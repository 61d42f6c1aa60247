-- insert-heavy: 2,000 narrow rows per statement.
DO $$
DECLARE d record;
BEGIN
  FOR run IN 1..12 LOOP
    INSERT INTO pwb_cal_insert (v, note) SELECT g, 'n' || g FROM generate_series(1, 2000) g;
    SELECT * INTO d FROM pwb.recent_decisions(1);
    INSERT INTO pwb_calibration VALUES ('insert_heavy', run, d.predicted_wal_bytes, d.actual_wal_bytes);
  END LOOP;
END $$;
