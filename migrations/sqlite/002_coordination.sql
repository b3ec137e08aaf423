-- SQLite: the same tables as postgres/002_coordination.sql. Times are fixed-width ISO 8601
-- UTC text (so they sort and compare as text), booleans 0/1.
-- Coordination state (coordination/, docs/HA.md). Operational, not events: nothing here is
-- ever rebuilt from the log, and the projections never read or write these tables.

-- The term of record: one row per elected role. The epoch only ever grows.
CREATE TABLE IF NOT EXISTS leader_term (
    name TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    holder TEXT,                        -- the instance id holding (or last holding) the term
    acquired_at TEXT,
    expires_at TEXT                     -- free once the current time passes it
);

-- One row per instance, upserted by its heartbeat. "crashed" is computed when read.
CREATE TABLE IF NOT EXISTS instance_heartbeats (
    instance_id TEXT PRIMARY KEY,
    hostname TEXT,
    port INTEGER,
    version TEXT,
    started_at TEXT,
    last_heartbeat TEXT NOT NULL,
    is_leader INTEGER NOT NULL DEFAULT 0,
    leader_epoch INTEGER,
    leader_acquired_at TEXT,
    mode TEXT,                          -- redis, database, single
    status TEXT NOT NULL                -- active (leader), standby, stopped
);
CREATE INDEX IF NOT EXISTS idx_instance_heartbeats_last ON instance_heartbeats (last_heartbeat);
