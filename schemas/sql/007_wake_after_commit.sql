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
-- before.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('allocation.wake_after_commit', true) IS DISTINCT FROM 'on' THEN
        PERFORM pg_notify('outbox', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION command_outcomes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('allocation.wake_after_commit', true) IS DISTINCT FROM 'on' THEN
        PERFORM pg_notify('command_outcomes', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION email_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('allocation.wake_after_commit', true) IS DISTINCT FROM 'on' THEN
        PERFORM pg_notify('email_outbox', '');
    END IF;
    RETURN NULL;
END;
$$;
