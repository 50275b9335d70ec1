-- Signals: one row per (source, fingerprint); the latest episode of it.
CREATE TABLE signals (
    id          TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    name        TEXT NOT NULL,
    labels      TEXT NOT NULL,
    annotations TEXT NOT NULL,
    status      TEXT NOT NULL,
    starts_at   BIGINT NOT NULL,
    ends_at     BIGINT,
    received_at BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    episodes    BIGINT NOT NULL
);
CREATE INDEX signals_status_seen ON signals (status, last_seen);

CREATE TABLE incidents (
    id           TEXT PRIMARY KEY,
    rule         TEXT NOT NULL,
    scenario     TEXT NOT NULL,
    severity     TEXT NOT NULL,
    group_key    TEXT NOT NULL,
    group_labels TEXT NOT NULL,
    state        TEXT NOT NULL,
    parent_id    TEXT,
    plan         TEXT NOT NULL,
    detected_at  BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    closed_at    BIGINT,
    version      BIGINT NOT NULL
);
-- The database itself guarantees one open incident per rule and group, so
-- no race between replicas or restarts can open a second one.
CREATE UNIQUE INDEX incidents_one_open ON incidents (group_key) WHERE closed_at IS NULL;
CREATE INDEX incidents_detected ON incidents (detected_at);

CREATE TABLE incident_signals (
    incident_id TEXT NOT NULL,
    signal_id   TEXT NOT NULL,
    attached_at BIGINT NOT NULL,
    PRIMARY KEY (incident_id, signal_id)
);

-- Append-only: rows are inserted, never updated or deleted.
CREATE TABLE incident_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT,
    actor       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX incident_events_incident ON incident_events (incident_id, seq);
