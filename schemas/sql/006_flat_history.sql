-- 006_flat_history: what a command costs no longer grows with its product's history.
--
-- A product is loaded with its batches only: each batch carries the quantity allocated to
-- it, kept up to date by the statements that add and remove its lines (in the same
-- transaction, under the product's version check). The lines stay in storage and are read
-- only as a command needs them, through indexes:
--   * Allocate asks whether the identical line is already allocated: the lines of that one
--     order (allocations_orderid_idx);
--   * a quantity decrease takes back the batch's newest lines: a backward scan of
--     allocations_batch_id_id_idx that stops after the few it needs.
ALTER TABLE batches ADD COLUMN allocated_quantity bigint NOT NULL DEFAULT 0;

UPDATE batches b
   SET allocated_quantity = s.qty
  FROM (SELECT batch_id, sum(qty) AS qty FROM allocations GROUP BY batch_id) s
 WHERE b.id = s.batch_id;

CREATE INDEX allocations_orderid_idx ON allocations (orderid);
CREATE INDEX allocations_batch_id_id_idx ON allocations (batch_id, id);
DROP INDEX allocations_batch_id_idx;

-- The Product aggregate guarantees these references (a line is only written for a batch
-- the product holds, a batch only for a product written in the same transaction): checking
-- them again costs a lookup and a row lock per written row.
ALTER TABLE allocations DROP CONSTRAINT allocations_batch_id_fkey;
ALTER TABLE batches DROP CONSTRAINT batches_sku_fkey;
