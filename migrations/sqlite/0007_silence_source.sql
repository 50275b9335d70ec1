-- Where a silence was made: `api` (API and CLI) or `slack` (the /dr
-- command). Rows from before this column were all made through the API.
ALTER TABLE silences ADD COLUMN source TEXT NOT NULL DEFAULT 'api';
