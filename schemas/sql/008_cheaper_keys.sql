-- 008_cheaper_keys: what every command pays to index what it writes.
--
-- 1. One index entry fewer for each allocation line and for each row of the read model. An
--    Allocate writes one of each, so it now adds six index entries instead of eight.
--
--    allocations: the primary key on id alone served only the deallocation's DELETE, which
--    knows the line's batch as well; the (batch_id, id) index already ordered a batch's lines
--    for the backward scan that takes back the newest. (batch_id, id) becomes the primary key.
--
--    allocations_view: read by order ("allocations for order X, in allocation order") and
--    deleted by order, sku and batch. (orderid, id) serves both, already in allocation order,
--    and becomes the primary key in place of id alone and the orderid index.
--
-- 2. The keys that the hot statements look up (skus, batch references, order ids, message
--    ids) compare bytewise (COLLATE "C"). Under a libc collation such as C.UTF-8 or en_US,
--    every comparison of an index descent goes through strcoll. Only equality and the order
--    of these keys inside their own indexes depend on it; no query sorts by them. On a
--    C.UTF-8 database the order is the same as before: code point order is byte order in
--    UTF-8.
--
-- On a large existing history this rebuilds the indexes of these tables under an exclusive
-- lock on each: the processor waits for the migration, as it does for every other.
ALTER TABLE allocations DROP CONSTRAINT allocations_pkey;
DROP INDEX allocations_batch_id_id_idx;
ALTER TABLE allocations ADD CONSTRAINT allocations_pkey PRIMARY KEY (batch_id, id);

ALTER TABLE allocations_view DROP CONSTRAINT allocations_view_pkey;
DROP INDEX allocations_view_orderid_idx;
ALTER TABLE allocations_view ALTER COLUMN orderid TYPE text COLLATE "C";
ALTER TABLE allocations_view ADD CONSTRAINT allocations_view_pkey PRIMARY KEY (orderid, id);

ALTER TABLE allocations ALTER COLUMN orderid TYPE text COLLATE "C";
ALTER TABLE products ALTER COLUMN sku TYPE text COLLATE "C";
ALTER TABLE batches ALTER COLUMN sku TYPE text COLLATE "C",
                    ALTER COLUMN reference TYPE text COLLATE "C";
ALTER TABLE command_outcomes ALTER COLUMN message_id TYPE text COLLATE "C";
