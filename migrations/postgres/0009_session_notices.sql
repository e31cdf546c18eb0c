-- Every instance keeps a short-lived copy of the sessions it just read (src/store/session_cache.rs).
-- These triggers tell all of them, in the same transaction as the change, that a copy is out of
-- date: whichever statement made it (the service's own, or an operator's by hand). A notice is
-- sent when the transaction commits and never for one rolled back.
--   s<session id>: the session was revoked or deleted;
--   u<user id>:    the account changed (status, address, name, password) or was deleted.
-- The service also sends h<nonce> on the same channel: its own heartbeat, proving the channel works.
CREATE FUNCTION aidlc_session_notice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'sessions' THEN
        PERFORM pg_notify('aidlc_sessions', 's' || OLD.id::text);
    ELSE
        PERFORM pg_notify('aidlc_sessions', 'u' || OLD.id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_revoked_notice
    AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (NEW.revoked_at IS DISTINCT FROM OLD.revoked_at)
    EXECUTE FUNCTION aidlc_session_notice();
-- The sweep deletes only dead sessions, which no copy answers for: no notice for those.
CREATE TRIGGER sessions_deleted_notice
    AFTER DELETE ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND OLD.expires_at > now())
    EXECUTE FUNCTION aidlc_session_notice();
-- Not on every write to the row: logins lock it with a no-op update (`updated_at = updated_at`).
-- Nor for a pending account (its verification, the sweep of unverified ones): it has no
-- session to copy, and notifying transactions take turns at commit.
CREATE TRIGGER users_changed_notice
    AFTER UPDATE ON users
    FOR EACH ROW WHEN (OLD.status <> 'pending' AND (
        NEW.status IS DISTINCT FROM OLD.status
        OR NEW.email IS DISTINCT FROM OLD.email
        OR NEW.full_name IS DISTINCT FROM OLD.full_name
        OR NEW.password_hash IS DISTINCT FROM OLD.password_hash
        OR NEW.verified_at IS DISTINCT FROM OLD.verified_at
    ))
    EXECUTE FUNCTION aidlc_session_notice();
CREATE TRIGGER users_deleted_notice
    AFTER DELETE ON users
    FOR EACH ROW WHEN (OLD.status <> 'pending')
    EXECUTE FUNCTION aidlc_session_notice();
