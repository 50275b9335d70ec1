-- When the pending approval times out (expires or escalates).
ALTER TABLE incidents ADD COLUMN approval_deadline BIGINT;
CREATE INDEX incidents_approval_deadline ON incidents (state, approval_deadline);
