-- SQLite: the same tables as postgres/001_projections.sql. Numbers are TEXT (exact, never
-- a float), times fixed-width ISO 8601 UTC text (so they sort), JSON as text, booleans 0/1.
-- The requirements' tables, as projections of the event log (projections/, docs/PROJECTIONS.md).
-- Nothing writes these but the projection runner and `ledger rebuild-projections`; they can be
-- dropped and rebuilt from the log at any time. Money and prices are TEXT without a scale:
-- exact, as decided (the requirements' DECIMAL(12,2) would round ATRs and ratios).

CREATE TABLE IF NOT EXISTS projection_tracking (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL,           -- notification id of the last event applied
    updated_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS portfolio_positions (
    position_id TEXT PRIMARY KEY,
    portfolio TEXT NOT NULL,
    instrument TEXT NOT NULL,
    label TEXT NOT NULL,
    status TEXT NOT NULL,               -- open, partial, closed
    is_base_position INTEGER NOT NULL DEFAULT 0,
    base_position_id TEXT,
    entry_fingerprint TEXT NOT NULL,
    entry_timestamp TEXT NOT NULL,
    entry_price TEXT NOT NULL,
    lots INTEGER NOT NULL,
    lot_size INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    point_value TEXT NOT NULL,
    margin_per_lot TEXT NOT NULL,
    initial_stop TEXT NOT NULL,
    current_stop TEXT NOT NULL,
    highest_close TEXT NOT NULL,
    signal_stop TEXT,
    mark TEXT,
    unrealized_pnl TEXT DEFAULT 0.0,
    realized_pnl TEXT DEFAULT 0.0,
    risk_amount TEXT,
    margin TEXT,
    risk_contribution TEXT,
    vol_contribution TEXT,
    entry_risk_contribution TEXT,
    entry_vol_contribution TEXT,
    equity_at_entry TEXT,
    rollover_status TEXT DEFAULT 'none',
    original_expiry TEXT,
    original_strike INTEGER,
    original_entry_price TEXT,
    rollover_timestamp TEXT,
    rollover_pnl TEXT DEFAULT 0.0,
    rollover_count INTEGER DEFAULT 0,
    strike INTEGER,
    expiry TEXT,
    pe_symbol TEXT,
    ce_symbol TEXT,
    pe_order_id TEXT,
    ce_order_id TEXT,
    pe_entry_price TEXT,
    ce_entry_price TEXT,
    contract_month TEXT,
    futures_symbol TEXT,
    futures_order_id TEXT,
    atr TEXT,
    er TEXT,
    limiter TEXT,
    sizing TEXT,
    exit_timestamp TEXT,
    exit_price TEXT,
    exit_reason TEXT,
    version INTEGER DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_positions_instrument_status ON portfolio_positions (instrument, status);
CREATE INDEX IF NOT EXISTS idx_positions_status ON portfolio_positions (status);
CREATE INDEX IF NOT EXISTS idx_positions_created_at ON portfolio_positions (created_at);
CREATE INDEX IF NOT EXISTS idx_positions_instrument_entry ON portfolio_positions (instrument, entry_timestamp);
CREATE INDEX IF NOT EXISTS idx_positions_rollover_status ON portfolio_positions (rollover_status, expiry);
CREATE INDEX IF NOT EXISTS idx_positions_portfolio_status ON portfolio_positions (portfolio, status);

-- One row per portfolio (the requirements' single row, id = 1, becomes a row per name).
CREATE TABLE IF NOT EXISTS portfolio_state (
    portfolio TEXT PRIMARY KEY,
    equity_mode TEXT NOT NULL,
    initial_capital TEXT NOT NULL,
    closed_equity TEXT NOT NULL,
    unrealized_pnl TEXT NOT NULL,
    open_equity TEXT NOT NULL,
    equity TEXT NOT NULL,
    total_risk_amount TEXT,
    total_risk_percent TEXT,
    total_vol_amount TEXT,
    total_vol_percent TEXT,
    margin_used TEXT,
    margin_available TEXT,
    open_positions INTEGER NOT NULL,
    version INTEGER NOT NULL,           -- the portfolio stream's version
    updated_at TEXT NOT NULL
);

-- Per portfolio and instrument. No foreign key to portfolio_positions: each table is rebuilt
-- on its own, and the log (not the database) is what keeps the two consistent (`ledger verify`).
CREATE TABLE IF NOT EXISTS pyramiding_state (
    portfolio TEXT NOT NULL,
    instrument TEXT NOT NULL,
    base_position_id TEXT,              -- NULL once the base position has closed
    last_pyramid_price TEXT,
    pyramids INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (portfolio, instrument)
);

-- One row per distinct signal decided (every type, accepted or rejected); id is the log
-- position of its SignalDecided event.
CREATE TABLE IF NOT EXISTS signal_log (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT UNIQUE NOT NULL,
    portfolio TEXT NOT NULL,
    instrument TEXT NOT NULL,
    signal_type TEXT NOT NULL,
    position TEXT,
    signal_timestamp TEXT NOT NULL,
    price TEXT,
    processing_status TEXT NOT NULL,    -- accepted, rejected
    reasons TEXT NOT NULL,
    position_ids TEXT NOT NULL,
    lots INTEGER,
    limiter TEXT,
    deliveries INTEGER NOT NULL,
    is_duplicate INTEGER NOT NULL DEFAULT 0,
    received_at TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    processed_by_instance TEXT,
    last_delivery_at TEXT NOT NULL,
    last_delivery_instance TEXT,
    payload TEXT,
    decision TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_signal_log_processed_at ON signal_log (processed_at);
CREATE INDEX IF NOT EXISTS idx_signal_log_instrument_timestamp ON signal_log (instrument, signal_timestamp);
CREATE INDEX IF NOT EXISTS idx_signal_log_portfolio_id ON signal_log (portfolio, id);

CREATE TABLE IF NOT EXISTS instance_metadata (
    instance_id TEXT PRIMARY KEY,
    started_at TEXT,
    last_heartbeat TEXT NOT NULL,  -- the latest the log saw of it (Redis has live beats)
    last_signal_processed TEXT,
    signals_processed INTEGER NOT NULL,
    is_leader INTEGER NOT NULL DEFAULT 0,
    leader_acquired_at TEXT,
    status TEXT NOT NULL,               -- active, stopped, unregistered (a CLI process)
    hostname TEXT,
    port INTEGER,
    version TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_instance_last_heartbeat ON instance_metadata (last_heartbeat);

-- The requirements' "separate statistics table", per portfolio, from closed trades and signals.
CREATE TABLE IF NOT EXISTS trading_statistics (
    portfolio TEXT PRIMARY KEY,
    trades INTEGER NOT NULL,            -- positions closed
    winning_trades INTEGER NOT NULL,
    losing_trades INTEGER NOT NULL,
    win_rate TEXT,                   -- percent of trades won
    gross_profit TEXT NOT NULL,
    gross_loss TEXT NOT NULL,
    net_pnl TEXT NOT NULL,           -- realized on closed trades (incl. their rollovers)
    largest_win TEXT NOT NULL,
    largest_loss TEXT NOT NULL,
    profit_factor TEXT,
    rollovers INTEGER NOT NULL,
    signals_decided INTEGER NOT NULL,
    signals_accepted INTEGER NOT NULL,
    signals_rejected INTEGER NOT NULL,
    duplicate_deliveries INTEGER NOT NULL,
    peak_closed_equity TEXT NOT NULL,
    max_drawdown TEXT NOT NULL,      -- largest fall of closed equity from its peak
    max_drawdown_percent TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
