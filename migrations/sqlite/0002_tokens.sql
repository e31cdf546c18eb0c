-- Sessions become refresh-token families, kept in SQL whatever the cache, so losing Redis can
-- never bring a revoked token back. Sessions of the first schema held opaque bearer tokens that
-- this version no longer accepts; they are dropped (users log in again once).

DROP TABLE sessions;

CREATE TABLE sessions (
    id             BLOB PRIMARY KEY,
    user_id        BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    last_used_at   TEXT NOT NULL,
    user_agent     TEXT,
    ip             TEXT,
    revoked_at     TEXT,
    revoked_reason TEXT
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- One row per refresh token ever issued in a family; token_hash is SHA-256 of the token.
-- used_at is set when the token is exchanged for its successor (generation + 1).
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id BLOB NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    used_at    TEXT,
    UNIQUE (session_id, generation)
);

-- Ed25519 signing keys for access tokens (private key as PKCS#8 DER). A key is published from
-- created_at, signs from activates_at, and stops signing at retired_at (its successor's
-- activates_at); it stays published until every token it signed has expired. At most one key
-- has no successor yet.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    private_key BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    activates_at TEXT NOT NULL,
    retired_at   TEXT
);
CREATE UNIQUE INDEX signing_keys_single_current ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;
