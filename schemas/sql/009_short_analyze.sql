-- 009_short_analyze: the history tables' ANALYZE no longer holds back the cleanup of the hot rows.
--
-- Every Allocate updates its batch and its product: about two row versions a command on
-- tables of a few thousand rows, which stay small only because each page prunes its dead
-- versions as it fills (HOT). Pruning may remove a version only once no snapshot can see it.
-- The lazy part of a VACUUM does not hold that horizon back, but its ANALYZE does, for as
-- long as it reads its sample: 300 x the statistics target rows (30,000 at the default 100),
-- spread over as many pages. On allocations, allocations_view and command_outcomes, which
-- grow by a row a command, autovacuum analyzes each time they have grown by a tenth; with
-- millions of rows the sample took 0.6-1.5 s, during which the batches' and products'
-- updates could not prune, moved to new pages with new index entries, and left those tables
-- several times larger for good (measured over 10 million commands: batches 0.7 -> 5.8 MB,
-- products 0.5 -> 4.3 MB, the hot statements slower by about a third, the last million at
-- 81-93% of the first's throughput; with this migration batches ended at 1.2 MB, products at
-- 0.6 MB, and the last million ran at 97% and 105% of the first's).
--
-- These tables are only read through their keys (order id, batch and id, message id,
-- recording time) on plans that do not depend on the data's distribution, so a sample of
-- 3,000 rows (statistics target 10) describes them well enough, and is read ten times as fast.
ALTER TABLE allocations
    ALTER COLUMN batch_id SET STATISTICS 10,
    ALTER COLUMN id       SET STATISTICS 10,
    ALTER COLUMN orderid  SET STATISTICS 10,
    ALTER COLUMN qty      SET STATISTICS 10;

ALTER TABLE allocations_view
    ALTER COLUMN id       SET STATISTICS 10,
    ALTER COLUMN orderid  SET STATISTICS 10,
    ALTER COLUMN sku      SET STATISTICS 10,
    ALTER COLUMN batchref SET STATISTICS 10;

ALTER TABLE command_outcomes
    ALTER COLUMN message_id   SET STATISTICS 10,
    ALTER COLUMN command_type SET STATISTICS 10,
    ALTER COLUMN outcome      SET STATISTICS 10,
    ALTER COLUMN reason       SET STATISTICS 10,
    ALTER COLUMN message      SET STATISTICS 10,
    ALTER COLUMN batchref     SET STATISTICS 10,
    ALTER COLUMN out_of_stock SET STATISTICS 10,
    ALTER COLUMN recorded_at  SET STATISTICS 10;
