-- The transactional mail outbox: a mail is a row written in the same transaction as the change
-- that causes it, and a sender in every instance delivers it. The row holds what the template
-- needs at send time; a code is kept only sealed (AEAD under the shared `outbox-key`, named by
-- key_id) in payload, which is erased once the mail is sent or expires with its code.
-- A row in flight ('sending') has next_attempt_at = lease_until, so one index finds both the
-- rows due and the rows whose lease ran out.
CREATE TABLE outbox (
    id              BLOB PRIMARY KEY,
    kind            TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    name            TEXT,
    locale          TEXT NOT NULL,
    valid_for_secs  INTEGER,
    payload         BLOB,
    key_id          TEXT,
    status          TEXT NOT NULL
        CHECK (status IN ('queued', 'sending', 'sent', 'dead', 'expired')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    lease_owner     TEXT,
    lease_until     TEXT,
    last_error      TEXT,
    expires_at      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at) WHERE status IN ('queued', 'sending');
-- Finished rows are deleted after a while (the sweep reads this index).
CREATE INDEX outbox_finished_idx ON outbox (updated_at)
    WHERE status IN ('sent', 'dead', 'expired');
