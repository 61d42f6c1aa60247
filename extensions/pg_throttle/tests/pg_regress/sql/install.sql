-- The extension installs its configuration table with row-level security.
CREATE EXTENSION pg_throttle;
SELECT relname, relrowsecurity FROM pg_class WHERE relname = 'throttlings';
