-- Silences created through the API or CLI, shared by every replica and kept
-- across restarts. Expiring one early sets ends_at; rows are kept for the
-- audit trail (an incident's `silenced` event names the id).
CREATE TABLE silences (
    id         TEXT PRIMARY KEY,
    matchers   TEXT NOT NULL,
    starts_at  BIGINT NOT NULL,
    ends_at    BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    comment    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Who ended it early, if anyone.
    expired_by TEXT
);
CREATE INDEX silences_ends_at ON silences (ends_at);
