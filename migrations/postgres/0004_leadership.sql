-- The leader lease: at most one row per name. `token` grows by one at every
-- takeover and is the fencing token: a leader's writes check it in their own
-- transaction, so a deposed leader that wakes up cannot act.
CREATE TABLE leader_lease (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    token       BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL
);

-- Signal changes in commit order, for the leader's rule engine when intake
-- runs on other replicas. A transport, not the audit: pruned once consumed.
-- Writers serialise on an advisory lock, so `seq` order is commit order and
-- a reader that has seen seq N has seen everything before it.
CREATE TABLE signal_log (
    seq    BIGSERIAL PRIMARY KEY,
    change TEXT NOT NULL,
    signal TEXT NOT NULL,
    at     BIGINT NOT NULL
);
