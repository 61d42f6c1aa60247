//! `pg_throttle` domain logic: tuple pacing.
