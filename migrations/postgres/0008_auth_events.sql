-- The audit trail: one row per security event of an account (registration, verification,
-- logins and their failures, password resets and changes, session revocations, refresh-token
-- reuse). Never a password, code or token. user_id has no foreign key on purpose: the trail
-- outlives a deleted account until the retention sweep removes it.
CREATE TABLE auth_events (
    id         UUID PRIMARY KEY,
    user_id    UUID,
    event      TEXT NOT NULL,
    outcome    TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    ip         TEXT,
    user_agent TEXT,
    request_id TEXT,
    created_at TIMESTAMPTZ NOT NULL
);
-- An owner's events newest first, paged by (created_at, id).
CREATE INDEX auth_events_user_created_idx ON auth_events (user_id, created_at DESC, id DESC);
-- The retention sweep.
CREATE INDEX auth_events_created_at_idx ON auth_events (created_at);
