-- Downgrade 0.3.0 -> 0.2.1: removes what 0.3.0 added (the scope_value CHECK
-- constraint, pwb.current_tenant() and pwb.shmem_bytes()). It also lets
-- PostgreSQL install 0.2.1 (CREATE EXTENSION ... VERSION '0.2.1' runs the
-- 0.3.0 script, then this one), which is how the upgrade test obtains a 0.2.1
-- installation to run ALTER EXTENSION ... UPDATE on. Before downgrading the
-- library itself, move queue policies to a legacy mode (see the docs).
\echo Use "ALTER EXTENSION pg_wal_budget UPDATE TO '0.2.1'" to load this file. \quit

ALTER TABLE pwb.policy DROP CONSTRAINT policy_scope_value_check;
DROP FUNCTION pwb.current_tenant();
DROP FUNCTION pwb.shmem_bytes();
