-- Slack request signatures seen in the last five minutes (Slack's window
-- for a request's timestamp), shared by every replica and kept across
-- restarts, so a captured request replayed anywhere is refused. Pruned as
-- new ones arrive.
CREATE TABLE slack_signatures (
    signature TEXT PRIMARY KEY,
    seen_at   BIGINT NOT NULL
);
CREATE INDEX slack_signatures_seen_at ON slack_signatures (seen_at);
