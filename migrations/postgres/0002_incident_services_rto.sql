-- Affected services in recovery order (JSON list) and the RTO deadline
-- (detection time + the smallest RTO among them).
ALTER TABLE incidents ADD COLUMN services TEXT NOT NULL DEFAULT '[]';
ALTER TABLE incidents ADD COLUMN rto_deadline BIGINT;
