-- When a bar first closed at or below a position's stop (the position stream's StopBreached;
-- docs/RULES.md "Stop breaches"). NULL: never breached, or breached before breaches were
-- recorded (the log of those stores holds no StopBreached to rebuild it from).
ALTER TABLE portfolio_positions ADD COLUMN IF NOT EXISTS stop_breached_at TIMESTAMPTZ;
