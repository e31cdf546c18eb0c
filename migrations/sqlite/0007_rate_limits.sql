-- Rate-limit counters when Redis is not configured: a row per counted hit, judged over a
-- sliding window. A check first upserts its key's row in rate_limit_keys, which makes
-- concurrent checks of one key take turns (the row lock in PostgreSQL, the write lock in
-- SQLite), so no more hits than the limit are granted. Names carry the limit's family and an
-- HMAC of the subject (address or client IP), never the subject itself.
CREATE TABLE rate_limit_keys (
    name       TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
CREATE INDEX rate_limit_keys_expiry_idx ON rate_limit_keys (expires_at);

CREATE TABLE rate_limit_hits (
    name       TEXT NOT NULL,
    id         TEXT NOT NULL,
    at         TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (name, id)
);
CREATE INDEX rate_limit_hits_at_idx ON rate_limit_hits (name, at);
CREATE INDEX rate_limit_hits_expiry_idx ON rate_limit_hits (expires_at);
