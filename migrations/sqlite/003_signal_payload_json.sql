-- Postgres' signal_log.payload becomes `json` (its text kept as written); SQLite's TEXT
-- column already keeps it. The step exists so both stores count the same versions.
SELECT 1;
