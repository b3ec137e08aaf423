-- An alert's payload is kept as it was sent: `json` stores its text (key order, numbers as
-- written: 1.50, 1e-7), where `jsonb` normalizes both. Nothing queries inside it.
ALTER TABLE signal_log ALTER COLUMN payload TYPE json USING payload::json;
