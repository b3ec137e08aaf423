-- Coordination state (coordination/, docs/HA.md). Operational, not events: nothing here is
-- ever rebuilt from the log, and the projections never read or write these tables.

-- The term of record: one row per elected role. Redis elects quickly; this row decides who
-- may act. The epoch only ever grows (begin_term bumps it, nothing lowers it), so a write
-- fenced by an older epoch is refused (coordination/terms.py).
CREATE TABLE IF NOT EXISTS leader_term (
    name TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    holder TEXT,                        -- the instance id holding (or last holding) the term
    acquired_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ              -- database time; free once now() passes it
);

-- One row per instance, upserted by its heartbeat. "crashed" is computed when read (a
-- heartbeat older than the staleness bound), never stored.
CREATE TABLE IF NOT EXISTS instance_heartbeats (
    instance_id TEXT PRIMARY KEY,
    hostname TEXT,
    port INTEGER,
    version TEXT,
    started_at TIMESTAMPTZ,
    last_heartbeat TIMESTAMPTZ NOT NULL,
    is_leader BOOLEAN NOT NULL DEFAULT FALSE,
    leader_epoch BIGINT,
    leader_acquired_at TIMESTAMPTZ,
    mode TEXT,                          -- redis, database, single
    status TEXT NOT NULL                -- active (leader), standby, stopped
);
CREATE INDEX IF NOT EXISTS idx_instance_heartbeats_last ON instance_heartbeats (last_heartbeat);
