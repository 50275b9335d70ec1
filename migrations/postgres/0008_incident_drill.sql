-- Incidents a drill opened (1) apart from real ones (0): limits, counts and
-- reports keep the two apart.
ALTER TABLE incidents ADD COLUMN drill BIGINT NOT NULL DEFAULT 0;
