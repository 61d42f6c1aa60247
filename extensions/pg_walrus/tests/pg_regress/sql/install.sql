-- The extension installs into schema walrus with its history table.
CREATE EXTENSION pg_walrus;
SELECT nspname FROM pg_namespace WHERE nspname = 'walrus';
SELECT count(*) FROM walrus.history;
