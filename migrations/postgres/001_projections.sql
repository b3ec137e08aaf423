-- The requirements' tables, as projections of the event log (projections/, docs/PROJECTIONS.md).
-- Nothing writes these but the projection runner and `ledger rebuild-projections`; they can be
-- dropped and rebuilt from the log at any time. Money and prices are NUMERIC without a scale:
-- exact, as decided (the requirements' DECIMAL(12,2) would round ATRs and ratios).

CREATE TABLE IF NOT EXISTS projection_tracking (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,           -- notification id of the last event applied
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS portfolio_positions (
    position_id TEXT PRIMARY KEY,
    portfolio TEXT NOT NULL,
    instrument TEXT NOT NULL,
    label TEXT NOT NULL,
    status TEXT NOT NULL,               -- open, partial, closed
    is_base_position BOOLEAN NOT NULL DEFAULT FALSE,
    base_position_id TEXT,
    entry_fingerprint TEXT NOT NULL,
    entry_timestamp TIMESTAMPTZ NOT NULL,
    entry_price NUMERIC NOT NULL,
    lots INTEGER NOT NULL,
    lot_size INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    point_value NUMERIC NOT NULL,
    margin_per_lot NUMERIC NOT NULL,
    initial_stop NUMERIC NOT NULL,
    current_stop NUMERIC NOT NULL,
    highest_close NUMERIC NOT NULL,
    signal_stop NUMERIC,
    mark NUMERIC,
    unrealized_pnl NUMERIC DEFAULT 0.0,
    realized_pnl NUMERIC DEFAULT 0.0,
    risk_amount NUMERIC,
    margin NUMERIC,
    risk_contribution NUMERIC,
    vol_contribution NUMERIC,
    entry_risk_contribution NUMERIC,
    entry_vol_contribution NUMERIC,
    equity_at_entry NUMERIC,
    rollover_status TEXT DEFAULT 'none',
    original_expiry TEXT,
    original_strike INTEGER,
    original_entry_price NUMERIC,
    rollover_timestamp TIMESTAMPTZ,
    rollover_pnl NUMERIC DEFAULT 0.0,
    rollover_count INTEGER DEFAULT 0,
    strike INTEGER,
    expiry TEXT,
    pe_symbol TEXT,
    ce_symbol TEXT,
    pe_order_id TEXT,
    ce_order_id TEXT,
    pe_entry_price NUMERIC,
    ce_entry_price NUMERIC,
    contract_month TEXT,
    futures_symbol TEXT,
    futures_order_id TEXT,
    atr NUMERIC,
    er NUMERIC,
    limiter TEXT,
    sizing JSONB,
    exit_timestamp TIMESTAMPTZ,
    exit_price NUMERIC,
    exit_reason TEXT,
    version INTEGER DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
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
    initial_capital NUMERIC NOT NULL,
    closed_equity NUMERIC NOT NULL,
    unrealized_pnl NUMERIC NOT NULL,
    open_equity NUMERIC NOT NULL,
    equity NUMERIC NOT NULL,
    total_risk_amount NUMERIC,
    total_risk_percent NUMERIC,
    total_vol_amount NUMERIC,
    total_vol_percent NUMERIC,
    margin_used NUMERIC,
    margin_available NUMERIC,
    open_positions INTEGER NOT NULL,
    version INTEGER NOT NULL,           -- the portfolio stream's version
    updated_at TIMESTAMPTZ NOT NULL
);

-- Per portfolio and instrument. No foreign key to portfolio_positions: each table is rebuilt
-- on its own, and the log (not the database) is what keeps the two consistent (`ledger verify`).
CREATE TABLE IF NOT EXISTS pyramiding_state (
    portfolio TEXT NOT NULL,
    instrument TEXT NOT NULL,
    base_position_id TEXT,              -- NULL once the base position has closed
    last_pyramid_price NUMERIC,
    pyramids INTEGER NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (portfolio, instrument)
);

-- One row per distinct signal decided (every type, accepted or rejected); id is the log
-- position of its SignalDecided event.
CREATE TABLE IF NOT EXISTS signal_log (
    id BIGINT PRIMARY KEY,
    fingerprint TEXT UNIQUE NOT NULL,
    portfolio TEXT NOT NULL,
    instrument TEXT NOT NULL,
    signal_type TEXT NOT NULL,
    position TEXT,
    signal_timestamp TIMESTAMPTZ NOT NULL,
    price NUMERIC,
    processing_status TEXT NOT NULL,    -- accepted, rejected
    reasons JSONB NOT NULL,
    position_ids JSONB NOT NULL,
    lots INTEGER,
    limiter TEXT,
    deliveries INTEGER NOT NULL,
    is_duplicate BOOLEAN NOT NULL DEFAULT FALSE,
    received_at TIMESTAMPTZ NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL,
    processed_by_instance TEXT,
    last_delivery_at TIMESTAMPTZ NOT NULL,
    last_delivery_instance TEXT,
    payload JSONB,
    decision JSONB NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_signal_log_processed_at ON signal_log (processed_at);
CREATE INDEX IF NOT EXISTS idx_signal_log_instrument_timestamp ON signal_log (instrument, signal_timestamp);
CREATE INDEX IF NOT EXISTS idx_signal_log_portfolio_id ON signal_log (portfolio, id);

CREATE TABLE IF NOT EXISTS instance_metadata (
    instance_id TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ,
    last_heartbeat TIMESTAMPTZ NOT NULL,  -- the latest the log saw of it (Redis has live beats)
    last_signal_processed TIMESTAMPTZ,
    signals_processed INTEGER NOT NULL,
    is_leader BOOLEAN NOT NULL DEFAULT FALSE,
    leader_acquired_at TIMESTAMPTZ,
    status TEXT NOT NULL,               -- active, stopped, unregistered (a CLI process)
    hostname TEXT,
    port INTEGER,
    version TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_instance_last_heartbeat ON instance_metadata (last_heartbeat);

-- The requirements' "separate statistics table", per portfolio, from closed trades and signals.
CREATE TABLE IF NOT EXISTS trading_statistics (
    portfolio TEXT PRIMARY KEY,
    trades INTEGER NOT NULL,            -- positions closed
    winning_trades INTEGER NOT NULL,
    losing_trades INTEGER NOT NULL,
    win_rate NUMERIC,                   -- percent of trades won
    gross_profit NUMERIC NOT NULL,
    gross_loss NUMERIC NOT NULL,
    net_pnl NUMERIC NOT NULL,           -- realized on closed trades (incl. their rollovers)
    largest_win NUMERIC NOT NULL,
    largest_loss NUMERIC NOT NULL,
    profit_factor NUMERIC,
    rollovers INTEGER NOT NULL,
    signals_decided INTEGER NOT NULL,
    signals_accepted INTEGER NOT NULL,
    signals_rejected INTEGER NOT NULL,
    duplicate_deliveries INTEGER NOT NULL,
    peak_closed_equity NUMERIC NOT NULL,
    max_drawdown NUMERIC NOT NULL,      -- largest fall of closed equity from its peak
    max_drawdown_percent NUMERIC NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
