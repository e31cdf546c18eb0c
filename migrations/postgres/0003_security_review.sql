-- Every distinct password registered for a still-pending address. Registering a pending address
-- again adds a row instead of replacing the password, so verification confirms the registration
-- of whoever holds the password (the owner), never just the newest one. Rows go when the
-- account is activated or deleted. All rows of one account share one Argon2 salt, so equal
-- hashes mean equal passwords.
CREATE TABLE pending_registrations (
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    full_name     TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, password_hash)
);
INSERT INTO pending_registrations (user_id, password_hash, full_name, created_at)
    SELECT id, password_hash, full_name, updated_at FROM users WHERE status = 'pending';

-- Pending accounts never verified are deleted after a while (the sweep reads this index).
CREATE INDEX users_pending_updated_at_idx ON users (updated_at) WHERE status = 'pending';

-- The oldest live sessions of a user end when a new one passes the per-user limit.
CREATE INDEX sessions_user_id_created_at_idx ON sessions (user_id, created_at);

-- A revoked (compromised) signing key stops signing and is unpublished at once.
ALTER TABLE signing_keys ADD COLUMN revoked_at TIMESTAMPTZ;
