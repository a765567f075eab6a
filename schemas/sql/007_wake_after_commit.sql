-- 007_wake_after_commit: the processor's own sessions wake the listeners after they commit,
-- not from inside the transaction.
--
-- A transaction that issued NOTIFY holds the database's notify-queue lock from the start of
-- its commit to its end, WAL flush included. With every command's transaction notifying
-- (outbox rows for the relay, outcomes for HTTP waiters), the commits of all consumer threads
-- and replicas queued behind one another, one flush each. The unit of work's session now sets
-- `allocation.wake_after_commit = on` and sends the NOTIFYs right after a successful COMMIT,
-- in a short transaction of their own with synchronous_commit off (pg_uow.c, commit_sql).
--
-- The triggers stay for every other writer (a manual INSERT, an older processor during a
-- rolling upgrade): a session that has not set the setting is notified from the trigger as
-- before. One function serves the three tables: each table's channel is its own name.
CREATE FUNCTION wake_listeners() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('allocation.wake_after_commit', true) IS DISTINCT FROM 'on' THEN
        PERFORM pg_notify(TG_TABLE_NAME, '');
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION wake_listeners();
DROP TRIGGER command_outcomes_notify ON command_outcomes;
CREATE TRIGGER command_outcomes_notify AFTER INSERT ON command_outcomes
    FOR EACH STATEMENT EXECUTE FUNCTION wake_listeners();
DROP TRIGGER email_outbox_notify ON email_outbox;
CREATE TRIGGER email_outbox_notify AFTER INSERT ON email_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION wake_listeners();

DROP FUNCTION outbox_notify();
DROP FUNCTION command_outcomes_notify();
DROP FUNCTION email_outbox_notify();
