-- 001_initial: the write model (products, batches, allocations), the read model
-- (allocations_view) and the consumer offsets stored with the effects they cover.
--
-- Applied once, inside a transaction, by ap_pg_migrate (processor/adapters/pg_migrate.c),
-- which keeps its own bookkeeping in schema_migrations. Later changes go in new files
-- (002_<what>.sql, ...); an applied migration is never edited. A migration file holds no
-- BEGIN/COMMIT of its own and nothing that refuses to run in a transaction (such as
-- CREATE INDEX CONCURRENTLY).

-- The Product aggregate's root: one row per sku. version_number is the optimistic-concurrency
-- token: a commit writes `SET version_number = new WHERE version_number = loaded` and treats
-- zero rows as a conflict.
CREATE TABLE products (
    sku            text   PRIMARY KEY,
    version_number bigint NOT NULL
);

-- Batches of stock. `reference` is unique across the whole system, not only per sku. The id
-- order is the creation order, which breaks ties in the allocation preference.
-- eta NULL means the batch is already in the warehouse.
CREATE TABLE batches (
    id                 bigserial PRIMARY KEY,
    reference          text      NOT NULL UNIQUE,
    sku                text      NOT NULL REFERENCES products (sku),
    purchased_quantity bigint    NOT NULL,
    eta                date
);

CREATE INDEX batches_sku_idx ON batches (sku);

-- Order lines allocated to a batch. A line's sku is its batch's sku, so it is not repeated
-- here. The id order is the allocation order (deallocation takes back the newest line). The
-- same line may appear twice in a batch only transiently; deletes remove one row, the newest.
CREATE TABLE allocations (
    id       bigserial PRIMARY KEY,
    batch_id bigint    NOT NULL REFERENCES batches (id),
    orderid  text      NOT NULL,
    qty      bigint    NOT NULL
);

CREATE INDEX allocations_batch_id_idx ON allocations (batch_id);

-- The read model (CQRS): written only by the Allocated/Deallocated event handlers, read only
-- by plain queries. One row per allocation, in allocation (id) order.
CREATE TABLE allocations_view (
    id       bigserial PRIMARY KEY,
    orderid  text      NOT NULL,
    sku      text      NOT NULL,
    batchref text      NOT NULL
);

CREATE INDEX allocations_view_orderid_idx ON allocations_view (orderid);

-- Where each consumer group is in each input partition, committed in the same transaction
-- as the effects of the messages before it (exactly-once processing). owner_epoch fences a
-- consumer that lost its partition: every claim bumps it, and an advance only succeeds with
-- the epoch it claimed and the offset it expects. next_offset -1 means nothing stored yet.
CREATE TABLE consumer_offsets (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    owner_epoch bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
