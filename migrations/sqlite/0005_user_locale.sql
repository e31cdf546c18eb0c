-- The language an account's mail is written in: taken from Accept-Language at registration
-- (the newest registration of a pending address), used for every later mail. Accounts made
-- before this get Korean, the default.
ALTER TABLE users ADD COLUMN locale TEXT NOT NULL DEFAULT 'ko';
