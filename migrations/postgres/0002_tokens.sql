-- Sessions become refresh-token families, kept in SQL whatever the cache, so losing Redis can
-- never bring a revoked token back. Sessions of the first schema held opaque bearer tokens that
-- this version no longer accepts; they are dropped (users log in again once).

DROP TABLE sessions;

CREATE TABLE sessions (
    id             UUID PRIMARY KEY,
    user_id        UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    last_used_at   TIMESTAMPTZ NOT NULL,
    user_agent     TEXT,
    ip             TEXT,
    revoked_at     TIMESTAMPTZ,
    revoked_reason TEXT
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- One row per refresh token ever issued in a family; token_hash is SHA-256 of the token.
-- used_at is set when the token is exchanged for its successor (generation + 1).
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    UNIQUE (session_id, generation)
);

-- Ed25519 signing keys for access tokens (private key as PKCS#8 DER). A key is published from
-- created_at, signs from activates_at, and stops signing at retired_at (its successor's
-- activates_at); it stays published until every token it signed has expired. At most one key
-- has no successor yet.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    private_key BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    activates_at TIMESTAMPTZ NOT NULL,
    retired_at   TIMESTAMPTZ
);
CREATE UNIQUE INDEX signing_keys_single_current ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;
