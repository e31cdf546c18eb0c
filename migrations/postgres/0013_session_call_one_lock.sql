-- A code login's session (aidlc_create_session_for_address) locked the account's row by its
-- address and then called aidlc_create_session, which looked the row up again to lock it a
-- second time. The statements move to aidlc_write_session, which takes no lock: each caller
-- takes its own, once. What they write, and in what order, is unchanged
-- (0010_create_session_call.sql says why the lock comes first).

-- The statements of a new session, for a caller holding the account's row lock.
CREATE FUNCTION aidlc_write_session(
    p_session_id    UUID,
    p_user_id       UUID,
    p_created_at    TIMESTAMPTZ,
    p_expires_at    TIMESTAMPTZ,
    p_last_used_at  TIMESTAMPTZ,
    p_user_agent    TEXT,
    p_ip            TEXT,
    p_refresh_hash  TEXT,
    p_event_id      UUID,
    p_event_user_id UUID,
    p_event         TEXT,
    p_outcome       TEXT,
    p_event_ip      TEXT,
    p_event_agent   TEXT,
    p_request_id    TEXT,
    p_event_at      TIMESTAMPTZ,
    p_used_after    TIMESTAMPTZ,
    p_others        BIGINT
) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    live  BIGINT;
    ended BIGINT;
BEGIN
    INSERT INTO sessions (id, user_id, created_at, expires_at, last_used_at, user_agent, ip)
        VALUES (p_session_id, p_user_id, p_created_at, p_expires_at, p_last_used_at,
                p_user_agent, p_ip);
    INSERT INTO refresh_tokens (token_hash, session_id, generation, created_at)
        VALUES (p_refresh_hash, p_session_id, 0, p_created_at);
    INSERT INTO auth_events (id, user_id, event, outcome, ip, user_agent, request_id, created_at)
        VALUES (p_event_id, p_event_user_id, p_event, p_outcome, p_event_ip, p_event_agent,
                p_request_id, p_event_at);
    -- Keeps the newest p_others live sessions besides the new one; counted first, as a login
    -- seldom passes the limit.
    SELECT count(*) INTO live FROM sessions
        WHERE user_id = p_user_id AND revoked_at IS NULL AND expires_at > p_created_at
          AND last_used_at > p_used_after AND id <> p_session_id;
    IF live <= p_others THEN
        RETURN 0;
    END IF;
    WITH gone AS (
        UPDATE sessions SET revoked_at = p_created_at, revoked_reason = 'session_limit'
        WHERE user_id = p_user_id AND revoked_at IS NULL AND expires_at > p_created_at
          AND last_used_at > p_used_after AND id <> p_session_id
          AND id NOT IN (
              SELECT id FROM sessions
              WHERE user_id = p_user_id AND revoked_at IS NULL AND expires_at > p_created_at
                AND last_used_at > p_used_after AND id <> p_session_id
              ORDER BY created_at DESC, last_used_at DESC LIMIT p_others)
        RETURNING 1)
    SELECT count(*) INTO ended FROM gone;
    RETURN ended;
END
$$;

CREATE OR REPLACE FUNCTION aidlc_create_session(
    p_session_id    UUID,
    p_user_id       UUID,
    p_created_at    TIMESTAMPTZ,
    p_expires_at    TIMESTAMPTZ,
    p_last_used_at  TIMESTAMPTZ,
    p_user_agent    TEXT,
    p_ip            TEXT,
    p_refresh_hash  TEXT,
    p_event_id      UUID,
    p_event_user_id UUID,
    p_event         TEXT,
    p_outcome       TEXT,
    p_event_ip      TEXT,
    p_event_agent   TEXT,
    p_request_id    TEXT,
    p_event_at      TIMESTAMPTZ,
    p_used_after    TIMESTAMPTZ,
    p_others        BIGINT
) RETURNS BIGINT LANGUAGE plpgsql AS $$
BEGIN
    -- Concurrent logins to one account take turns here (no new row version is written).
    PERFORM 1 FROM users WHERE id = p_user_id FOR NO KEY UPDATE;
    RETURN aidlc_write_session(p_session_id, p_user_id, p_created_at, p_expires_at,
        p_last_used_at, p_user_agent, p_ip, p_refresh_hash, p_event_id, p_event_user_id,
        p_event, p_outcome, p_event_ip, p_event_agent, p_request_id, p_event_at,
        p_used_after, p_others);
END
$$;

CREATE OR REPLACE FUNCTION aidlc_create_session_for_address(
    p_email         TEXT,
    p_session_id    UUID,
    p_created_at    TIMESTAMPTZ,
    p_expires_at    TIMESTAMPTZ,
    p_last_used_at  TIMESTAMPTZ,
    p_user_agent    TEXT,
    p_ip            TEXT,
    p_refresh_hash  TEXT,
    p_event_id      UUID,
    p_event         TEXT,
    p_outcome       TEXT,
    p_event_ip      TEXT,
    p_event_agent   TEXT,
    p_request_id    TEXT,
    p_event_at      TIMESTAMPTZ,
    p_used_after    TIMESTAMPTZ,
    p_others        BIGINT
) RETURNS TABLE (
    o_ended       BIGINT,
    o_id          UUID,
    o_email       TEXT,
    o_full_name   TEXT,
    o_password    TEXT,
    o_status      TEXT,
    o_created_at  TIMESTAMPTZ,
    o_updated_at  TIMESTAMPTZ,
    o_verified_at TIMESTAMPTZ,
    o_locale      TEXT
) LANGUAGE plpgsql AS $$
DECLARE
    u users;
BEGIN
    SELECT * INTO u FROM users WHERE email = p_email AND status = 'active' FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    o_ended := aidlc_write_session(p_session_id, u.id, p_created_at, p_expires_at,
        p_last_used_at, p_user_agent, p_ip, p_refresh_hash, p_event_id, u.id, p_event, p_outcome,
        p_event_ip, p_event_agent, p_request_id, p_event_at, p_used_after, p_others);
    SELECT u.id, u.email, u.full_name, u.password_hash, u.status, u.created_at, u.updated_at,
        u.verified_at, u.locale
        INTO o_id, o_email, o_full_name, o_password, o_status, o_created_at, o_updated_at,
        o_verified_at, o_locale;
    RETURN NEXT;
END
$$;
