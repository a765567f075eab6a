-- 003_outbox_parked: where the relay puts outbox rows Kafka refuses for good (larger than
-- the topic accepts, an invalid record or topic name), so one such row never holds up the
-- rows behind it. The relay moves a row here in one statement, with Kafka's reason, and logs
-- an error. An operator can fix the cause (for example raise the topic's max.message.bytes)
-- and move the row back:
--   INSERT INTO outbox (event_id, topic, key, value, header_names, header_values)
--   SELECT event_id, topic, key, value, header_names, header_values
--     FROM outbox_parked WHERE id = ...;
-- Re-sent this way it keeps its event-id, but comes after events that were sent meanwhile.
CREATE TABLE outbox_parked (
    id            bigint      PRIMARY KEY, -- the row's id in the outbox
    event_id      uuid        NOT NULL,
    topic         text        NOT NULL,
    key           bytea,
    value         bytea,
    header_names  text[]      NOT NULL,
    header_values bytea[]     NOT NULL,
    created_at    timestamptz NOT NULL,
    parked_at     timestamptz NOT NULL DEFAULT now(),
    reason        text        NOT NULL
);
