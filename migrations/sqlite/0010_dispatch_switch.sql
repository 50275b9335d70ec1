-- The global dispatch kill switch: every change is a row (who, when, why),
-- never updated, so the table is its own audit trail; the latest row is in
-- force. In the store, so it survives restarts and holds on every replica
-- and under every leader.
CREATE TABLE dispatch_switch (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    engaged       BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    abort_running BIGINT NOT NULL,
    at            BIGINT NOT NULL
);
