-- Console sign-ins. The cookie carries a random id; only its SHA-256 is
-- kept here, with whom it names and a fingerprint of the token that opened
-- it (never the token), so signing out on one replica ends the session on
-- every replica, and removing the token ends its sessions.
CREATE TABLE console_sessions (
    id          TEXT PRIMARY KEY,
    principal   TEXT NOT NULL,
    credential  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    revoked_why TEXT
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
