-- A failback incident names the failover it undoes. At most one failback
-- per failover, however often the leader prepares it (or two leaders race).
ALTER TABLE incidents ADD COLUMN failback_of TEXT;
CREATE UNIQUE INDEX incidents_failback_of ON incidents (failback_of) WHERE failback_of IS NOT NULL;
