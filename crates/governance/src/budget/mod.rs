//! `pg_wal_budget` domain logic: scopes, policy matching, WAL prediction.
