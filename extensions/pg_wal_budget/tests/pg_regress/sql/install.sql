-- The extension installs into schema pwb and knows it was preloaded.
CREATE EXTENSION pg_wal_budget;
SELECT nspname FROM pg_namespace WHERE nspname = 'pwb';
SELECT pwb.preload_status();
SELECT pwb.version() = extversion AS version_matches FROM pg_extension WHERE extname = 'pg_wal_budget';
