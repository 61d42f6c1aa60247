-- COPY FROM: 5,000 rows per statement (server-side program; superuser or
-- pg_execute_server_program).
DO $$
DECLARE d record;
BEGIN
  FOR run IN 1..12 LOOP
    EXECUTE $c$COPY pwb_cal_copy FROM PROGRAM 'seq 1 5000 | sed "s/$/\tcopy-row/"'$c$;
    SELECT * INTO d FROM pwb.recent_decisions(1);
    INSERT INTO pwb_calibration VALUES ('copy', run, d.predicted_wal_bytes, d.actual_wal_bytes);
  END LOOP;
END $$;
