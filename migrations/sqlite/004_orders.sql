-- The order desk's read model: one row per order intent (projections/, docs/ORDERS.md).
-- A projection like the others: rebuilt from the log's Order events at any time.

CREATE TABLE IF NOT EXISTS orders (
    intent_id TEXT PRIMARY KEY,
    portfolio TEXT NOT NULL,
    position_id TEXT NOT NULL,
    cause TEXT NOT NULL,                -- the decision's fingerprint, or a command id
    purpose TEXT NOT NULL,              -- open, close, reduce, roll_close, roll_open
    leg TEXT NOT NULL,                  -- CE, PE, FUT
    symbol TEXT NOT NULL,
    exchange TEXT NOT NULL,
    side TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    product TEXT NOT NULL,
    price_type TEXT NOT NULL,
    reference_price TEXT NOT NULL,   -- the decided price
    decided_at TEXT NOT NULL,
    status TEXT NOT NULL,               -- intended, sent, unknown, not_placed, acknowledged,
                                        -- partially_filled, filled, rejected
    attempts INTEGER NOT NULL,
    sent_epoch INTEGER,
    sent_at TEXT,
    broker_order_id TEXT,
    filled_quantity INTEGER NOT NULL,
    average_price TEXT,
    slippage TEXT,                   -- per unit against the decided price; positive costs
    reason TEXT,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_orders_status ON orders (status, decided_at);
CREATE INDEX IF NOT EXISTS idx_orders_position ON orders (position_id);
