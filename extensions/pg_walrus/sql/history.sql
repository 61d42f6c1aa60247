-- Audit trail of every sizing decision (see docs/pg_walrus.md). The CHECK
-- constraints and the index name are those of the public pg_walrus.
CREATE TABLE history (
    id BIGSERIAL PRIMARY KEY,
    timestamp TIMESTAMPTZ NOT NULL DEFAULT now(),
    action TEXT NOT NULL
        CONSTRAINT history_action_check
        CHECK (action OPERATOR(pg_catalog.=) ANY (ARRAY['increase', 'decrease', 'capped', 'dry_run', 'skipped'])),
    old_size_mb INTEGER NOT NULL CONSTRAINT history_old_size_mb_check CHECK (old_size_mb OPERATOR(pg_catalog.>) 0),
    new_size_mb INTEGER NOT NULL CONSTRAINT history_new_size_mb_check CHECK (new_size_mb OPERATOR(pg_catalog.>) 0),
    forced_checkpoints BIGINT NOT NULL
        CONSTRAINT history_forced_checkpoints_check CHECK (forced_checkpoints OPERATOR(pg_catalog.>=) 0),
    checkpoint_timeout_sec INTEGER NOT NULL
        CONSTRAINT history_checkpoint_timeout_sec_check CHECK (checkpoint_timeout_sec OPERATOR(pg_catalog.>) 0),
    reason TEXT,
    metadata JSONB
);
CREATE INDEX walrus_history_timestamp_idx ON history (timestamp);
