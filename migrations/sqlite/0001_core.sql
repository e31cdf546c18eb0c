-- Accounts, one-time codes, resend cooldowns, sessions and shared server secrets.
-- SQLite twin of migrations/postgres: UUIDs as 16-byte BLOBs, times as fixed-width UTC text.

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    email         TEXT NOT NULL,
    full_name     TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'active', 'disabled')),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    verified_at   TEXT
);
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE INDEX users_status_idx ON users (status);
CREATE INDEX users_created_at_idx ON users (created_at);

-- Used when REDIS_URL is not set. code_hash is an HMAC; the code itself is never stored.
CREATE TABLE verification_codes (
    email      TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    code_hash  TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (email, purpose)
);
CREATE INDEX verification_codes_expires_at_idx ON verification_codes (expires_at);

CREATE TABLE code_cooldowns (
    email   TEXT NOT NULL,
    purpose TEXT NOT NULL,
    until   TEXT NOT NULL,
    PRIMARY KEY (email, purpose)
);
CREATE INDEX code_cooldowns_until_idx ON code_cooldowns (until);

-- Used when REDIS_URL is not set. token_hash is SHA-256 of the bearer token.
CREATE TABLE sessions (
    id         BLOB PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    user_agent TEXT,
    ip         TEXT
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

CREATE TABLE server_secrets (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    created_at TEXT NOT NULL
);
