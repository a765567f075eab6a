-- 002_outbox: the transactional outbox. Every event (and every CommandRejected and
-- dead letter) is written here in the same transaction as the state change and consumer
-- offset that caused it, then relayed to Kafka by the one active relay, which deletes rows
-- only after Kafka acknowledged them.
--
-- Order: rows are relayed in id order. For one sku, ids follow commit order, because the
-- writes of one product are serialised by its version row before any outbox row is inserted.
CREATE TABLE outbox (
    id            bigserial   PRIMARY KEY,
    -- Sent as the `event-id` header: stable across re-deliveries after a crash.
    event_id      uuid        NOT NULL DEFAULT gen_random_uuid(),
    topic         text        NOT NULL,
    key           bytea,
    value         bytea,
    -- Kafka headers, in order (event-id is added by the relay from event_id).
    header_names  text[]      NOT NULL DEFAULT '{}',
    header_values bytea[]     NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (cardinality(header_names) = cardinality(header_values))
) WITH (
    -- A queue table: rows are inserted and deleted all day. Vacuum it by row count, not by
    -- a fraction of its (small) size, so dead tuples never pile up under steady load.
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);

-- Wakes the relay when a transaction that wrote rows commits (NOTIFY is delivered at commit,
-- and one per transaction is enough: identical notifications are folded).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
