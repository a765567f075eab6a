-- 005_email_outbox: out-of-stock emails waiting to be sent. The OutOfStock handler inserts a
-- row in the command's own transaction (so a command rolled back or retried leaves none
-- behind); the email sender of `allocation-processor run` delivers it over SMTP and deletes
-- it only after the server accepted the message.
--
-- A row sent but not yet deleted when the process dies is sent again after the restart,
-- with the same Message-ID (derived from event_id), so a receiver can drop the duplicate.
-- Several senders (replicas) share the table: each takes a row with FOR UPDATE SKIP LOCKED.
CREATE TABLE email_outbox (
    id              bigserial   PRIMARY KEY,
    -- The email's event id; its Message-ID is <event_id@the domain of NOTIFY_EMAIL_FROM>.
    event_id        uuid        NOT NULL DEFAULT gen_random_uuid(),
    -- The TOPIC_PREFIX of the processor that wrote the row: only senders with the same prefix
    -- (the same deployment, hence the same SMTP settings) send it.
    origin          text        NOT NULL,
    recipient       text        NOT NULL,
    subject         text        NOT NULL,
    body            text        NOT NULL,
    -- Failed attempts so far; the next one waits until next_attempt_at (growing backoff).
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX email_outbox_due_idx ON email_outbox (origin, next_attempt_at, id);

-- Wakes the senders when a transaction that wrote rows commits (as outbox_notify does).
CREATE FUNCTION email_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('email_outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER email_outbox_notify AFTER INSERT ON email_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION email_outbox_notify();
