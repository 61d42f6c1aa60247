//! `pg_walrus` domain logic: `max_wal_size` sizing strategies.
