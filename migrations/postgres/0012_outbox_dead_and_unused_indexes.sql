-- The sweep reads the outbox's depth once a minute on every instance (queued, sending, dead):
-- it counted every row by state, a scan of the week of sent mail kept (13.9 ms on 100,000
-- rows); now each count reads an index over its rows alone (0.5 ms). Dead rows are few and get
-- their own.
CREATE INDEX outbox_dead_idx ON outbox (updated_at) WHERE status = 'dead';

-- Indexes no statement reads, each one more entry to write (and, with updated_at in an
-- index, every UPDATE of a user writes a new entry in all of them): sessions (user_id) is the
-- prefix of sessions (user_id, created_at), which serves every lookup by account; nothing
-- selects users by status alone (the pending sweep has its own partial index) or by creation
-- time.
DROP INDEX IF EXISTS sessions_user_id_idx;
DROP INDEX IF EXISTS users_status_idx;
DROP INDEX IF EXISTS users_created_at_idx;
