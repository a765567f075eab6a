-- 004_command_outcomes: what became of each command that carried a `message-id` header (the
-- HTTP API's Idempotency-Key, or any sender's own id), written in the same transaction as
-- the command's effects and its consumer offset.
--
-- Two uses: a command whose message id is already here is skipped (a repeated key is never
-- applied twice, whichever replica reads it), and the HTTP API answers from here, so any
-- replica can tell a client what became of a command another replica applied. Rows older
-- than COMMAND_OUTCOME_RETENTION_HOURS are deleted by the HTTP side of every replica.
CREATE TABLE command_outcomes (
    message_id   text        PRIMARY KEY,
    command_type text        NOT NULL,  -- CreateBatch, Allocate, ...; '' when undecodable
    outcome      text        NOT NULL
                 CHECK (outcome IN ('applied', 'rejected', 'dead_lettered', 'failed')),
    reason       text,                  -- a rejection's reason (invalid_sku, ...)
    message      text,                  -- the human text of a refusal or failure
    batchref     text,                  -- Allocate: the batch the line went to; NULL when out of stock
    out_of_stock boolean     NOT NULL DEFAULT false,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX command_outcomes_recorded_at_idx ON command_outcomes (recorded_at);

-- Wakes the HTTP requests waiting for an outcome when a transaction that recorded some
-- commits (delivered at commit; one per transaction is enough).
CREATE FUNCTION command_outcomes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('command_outcomes', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER command_outcomes_notify AFTER INSERT ON command_outcomes
    FOR EACH STATEMENT EXECUTE FUNCTION command_outcomes_notify();
