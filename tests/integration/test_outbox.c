/*
 * test_outbox.c - the outbox's writing side against a real PostgreSQL: events, rejections
 * and dead letters become rows in the same transaction as the state change, byte-exact, and
 * the rows of one sku are ordered as their transactions committed, even when concurrent
 * transactions race for the same product.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <poll.h>
#include <libpq-fe.h>
#include <pthread.h>

#include "ap/bootstrap.h"
#include "ap/log.h"
#include "ap/outbox.h"
#include "ap/outcomes.h"
#include "ap/pg.h"
#include "fakes.h"
#include "support.h"

static const char *db_url(void)
{
    return getenv("DATABASE_URL");
}

static void uniq(char *buf, size_t size, const char *what)
{
    static unsigned counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, size, "outbox-%s-%d-%ld-%u", what, (int)getpid(), (long)ts.tv_nsec,
             ++counter);
}

/* One wiring like production's: pg uow, outbox publisher, single-object Avro. */
typedef struct rig {
    ap_app_t app;
    ap_avro_codec_t *codec;
    ap_outbox_t *outbox;
    char prefix[128];
} rig_t;

static void rig_init(rig_t *rig, const char *prefix)
{
    ap_uow_t *uow;
    memset(rig, 0, sizeof *rig);
    snprintf(rig->prefix, sizeof rig->prefix, "%s", prefix);
    assert_int_equal(ap_avro_codec_new(AP_WIRE_SINGLE_OBJECT, &rig->codec), AP_OK);
    assert_int_equal(ap_pg_uow_new(db_url(), &uow), AP_OK);
    assert_int_equal(ap_pg_outbox_new(uow, rig->codec, prefix, &rig->outbox), AP_OK);
    assert_int_equal(ap_bootstrap(&rig->app, uow, ap_outbox_publisher(rig->outbox),
                                  ap_fake_notifier_new(), ap_system_clock_new(), NULL),
                     AP_OK);
}

/* A rig with a fresh prefix, and a fresh sku and batch ref for the test (128 bytes each). */
static void rig_init_fresh(rig_t *rig, const char *what, char *sku, char *ref)
{
    char prefix[96];
    uniq(prefix, sizeof prefix, what);
    uniq(sku, 128, "sku");
    uniq(ref, 128, "ref");
    rig_init(rig, prefix);
}

static void rig_release(rig_t *rig)
{
    ap_app_release(&rig->app);
    ap_avro_codec_free(rig->codec);
}

static PGconn *connect_db(void)
{
    PGconn *conn = PQconnectdb(db_url());
    assert_int_equal(PQstatus(conn), CONNECTION_OK);
    return conn;
}

static long count_rows(PGconn *conn, const char *prefix)
{
    const char *params[1] = {prefix};
    PGresult *res = PQexecParams(conn,
                                 "SELECT count(*) FROM outbox WHERE topic LIKE $1 || '.%'", 1,
                                 NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    long n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return n;
}

static void execute(rig_t *rig, const ap_msg_t *cmd)
{
    char why[256];
    assert_int_equal(ap_bus_execute(&rig->app.bus, cmd, why, sizeof why), AP_OK);
}

static void test_events_commit_with_the_transaction(void **state)
{
    rig_t rig;
    char sku[128], ref[128];
    ap_msg_t cmd;
    PGconn *conn = connect_db();
    (void)state;

    rig_init_fresh(&rig, "tx", sku, ref);
    const char *prefix = rig.prefix;
    ap_uow_t *uow = rig.app.deps.uow;

    /* Rolled back: no row ever becomes visible. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_msg_create_batch(&cmd, ref, sku, 10, false, 0);
    execute(&rig, &cmd);
    assert_int_equal(count_rows(conn, prefix), 0); /* not committed yet */
    ap_uow_rollback(uow);
    assert_int_equal(count_rows(conn, prefix), 0);

    /* Committed: BatchCreated and Allocated rows, keyed by sku, decodable, with headers. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    execute(&rig, &cmd);
    ap_msg_allocate(&cmd, "o1", sku, 3);
    snprintf(cmd.meta.correlation_id, sizeof cmd.meta.correlation_id, "corr-1");
    snprintf(cmd.meta.causation_id, sizeof cmd.meta.causation_id, "msg-1");
    execute(&rig, &cmd);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(count_rows(conn, prefix), 2);

    const char *params[1] = {prefix};
    PGresult *res = PQexecParams(
        conn,
        "SELECT topic, key, value, array_to_string(header_names, ','), "
        "convert_from(header_values[2], 'UTF8') FROM outbox WHERE topic LIKE $1 || '.%' "
        "ORDER BY id",
        1, NULL, params, NULL, NULL, 1);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 2);
    char topic[256];
    snprintf(topic, sizeof topic, "%s.events.allocated", prefix);
    assert_memory_equal(PQgetvalue(res, 1, 0), topic, strlen(topic));
    assert_int_equal(PQgetlength(res, 1, 1), (int)strlen(sku));
    assert_memory_equal(PQgetvalue(res, 1, 1), sku, strlen(sku));
    assert_memory_equal(PQgetvalue(res, 1, 3), "event-type,correlation-id,causation-id",
                        strlen("event-type,correlation-id,causation-id"));
    assert_memory_equal(PQgetvalue(res, 1, 4), "corr-1", 6);

    char *json = NULL, why[256];
    assert_int_equal(ap_avro_decode_to_json(rig.codec, PQgetvalue(res, 1, 2),
                                            (size_t)PQgetlength(res, 1, 2), &json, why,
                                            sizeof why),
                     AP_OK);
    assert_non_null(strstr(json, "\"o1\""));
    free(json);
    PQclear(res);
    rig_release(&rig);
    PQfinish(conn);
}

/* With `deferred`, the two inserts wait for the commit and go as one statement over arrays
 * (pg_uow.c send_inserts): the bytes must survive that path too. */
static void check_byte_exact(bool deferred)
{
    rig_t rig;
    char prefix[96];
    PGconn *conn = connect_db();
    static const unsigned char key[] = {0x00, 0xff, 'k', 0x00};
    static const unsigned char value[] = {0xc3, 0x01, 0x00, 0x00, 'x', 0xff};
    static const unsigned char binary_header[] = {0x00, 0x01, '"', '\\', '{'};

    uniq(prefix, sizeof prefix, "dlq");
    rig_init(&rig, prefix);
    ap_uow_t *uow = rig.app.deps.uow;
    uow->defer_writes = deferred;

    ap_header_t headers[] = {AP_HEADER("x-one", "1", 1),
                             AP_HEADER("we\"ird,name", binary_header, sizeof binary_header),
                             AP_HEADER("no-value", NULL, 0)};
    ap_rejection_t rejection = {.command_type = AP_CMD_ALLOCATE,
                                .reason = "invalid_sku",
                                .message = "Invalid sku NOPE",
                                .source_topic = "t",
                                .source_partition = 2,
                                .source_offset = 42};
    ap_msg_meta_t meta = {.correlation_id = "c"};

    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_dead_letter_t letter = {.key = key,
                               .key_len = sizeof key,
                               .value = value,
                               .value_len = sizeof value,
                               .headers = headers,
                               .nheaders = 3,
                               .reason = "bad input",
                               .source_topic = "src",
                               .source_partition = 1,
                               .source_offset = 7};
    assert_int_equal(ap_outbox_dead_letter(rig.outbox, &letter), AP_OK);
    assert_int_equal(ap_outbox_reject(rig.outbox, &rejection, &meta, "NOPE", 4), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);

    const char *params[1] = {prefix};
    PGresult *res = PQexecParams(
        conn,
        "SELECT key, value, header_names, header_values[2], header_values[3] IS NULL, "
        "convert_from(header_values[7], 'UTF8'), topic FROM outbox "
        "WHERE topic LIKE $1 || '.%' ORDER BY id",
        1, NULL, params, NULL, NULL, 1);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 2);
    assert_int_equal(PQgetlength(res, 0, 0), sizeof key);
    assert_memory_equal(PQgetvalue(res, 0, 0), key, sizeof key);
    assert_int_equal(PQgetlength(res, 0, 1), sizeof value);
    assert_memory_equal(PQgetvalue(res, 0, 1), value, sizeof value);
    assert_int_equal(PQgetlength(res, 0, 3), sizeof binary_header);
    assert_memory_equal(PQgetvalue(res, 0, 3), binary_header, sizeof binary_header);
    assert_int_equal(*PQgetvalue(res, 0, 4), 1); /* binary bool: true */
    assert_memory_equal(PQgetvalue(res, 0, 5), "7", 1); /* dlq-source-offset */
    char topic[256];
    snprintf(topic, sizeof topic, "%s.dead_letter", prefix);
    assert_memory_equal(PQgetvalue(res, 0, 6), topic, strlen(topic));
    snprintf(topic, sizeof topic, "%s.events.command_rejected", prefix);
    assert_memory_equal(PQgetvalue(res, 1, 6), topic, strlen(topic));

    char *json = NULL, why[256];
    assert_int_equal(ap_avro_decode_to_json(rig.codec, PQgetvalue(res, 1, 1),
                                            (size_t)PQgetlength(res, 1, 1), &json, why,
                                            sizeof why),
                     AP_OK);
    assert_non_null(strstr(json, "Invalid sku NOPE"));
    free(json);
    PQclear(res);
    rig_release(&rig);
    PQfinish(conn);
}

static void test_rejection_and_dead_letter_rows_are_byte_exact(void **state)
{
    (void)state;
    check_byte_exact(false);
}

static void test_deferred_rows_are_byte_exact(void **state)
{
    (void)state;
    check_byte_exact(true);
}

/* ------------------------------------------------------------ order under concurrency */

#define PER_THREAD 40

typedef struct racer {
    const char *prefix, *sku;
    int id;
    unsigned retries;
} racer_t;

static void *race(void *arg)
{
    racer_t *racer = arg;
    rig_t rig;
    char orderid[64], why[256];
    ap_msg_t cmd;

    rig_init(&rig, racer->prefix);
    /* Two writers of one sku, by design: on a loaded machine one can lose the race more
     * often than the default policy's 8 attempts allow. This test is about commit order, so
     * the budget is not what it checks (bus tests check that). */
    rig.app.bus.retry.max_attempts = 1000;
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(orderid, sizeof orderid, "t%d-%d", racer->id, i);
        ap_msg_allocate(&cmd, orderid, racer->sku, 1);
        ap_err_t err = ap_bus_execute(&rig.app.bus, &cmd, why, sizeof why);
        if (err != AP_OK) {
            fprintf(stderr, "racer %d: %s\n", racer->id, ap_strerror(err));
            abort();
        }
    }
    racer->retries = (unsigned)rig.app.bus.stats.retries;
    rig_release(&rig);
    return NULL;
}

static void test_rows_of_one_sku_follow_commit_order(void **state)
{
    rig_t rig;
    char prefix[96], sku[128], ref[128], why[256];
    ap_msg_t cmd;
    pthread_t threads[2];
    racer_t racers[2];
    (void)state;

    uniq(prefix, sizeof prefix, "race");
    uniq(sku, sizeof sku, "sku");
    uniq(ref, sizeof ref, "ref");
    rig_init(&rig, prefix);
    ap_msg_create_batch(&cmd, ref, sku, 1000, false, 0);
    assert_int_equal(ap_bus_execute(&rig.app.bus, &cmd, why, sizeof why), AP_OK);

    /* Each allocation may fail with a conflict (and be retried): the other thread got there
     * first. */
    for (int t = 0; t < 2; t++) {
        racers[t] = (racer_t){prefix, sku, t, 0};
        assert_int_equal(pthread_create(&threads[t], NULL, race, &racers[t]), 0);
    }
    for (int t = 0; t < 2; t++)
        pthread_join(threads[t], NULL);
    print_message("conflicts retried: %u\n", racers[0].retries + racers[1].retries);

    /* The allocations' commit order is their id order in the write model. */
    PGconn *conn = connect_db();
    const char *params[2] = {sku, prefix};
    PGresult *lines = PQexecParams(conn,
                                   "SELECT a.orderid FROM allocations a JOIN batches b ON "
                                   "b.id = a.batch_id WHERE b.sku = $1 ORDER BY a.id",
                                   1, NULL, params, NULL, NULL, 0);
    PGresult *rows = PQexecParams(conn,
                                  "SELECT value FROM outbox WHERE key = convert_to($1, 'UTF8') "
                                  "AND topic = $2 || '.events.allocated' ORDER BY id",
                                  2, NULL, params, NULL, NULL, 1);
    assert_int_equal(PQresultStatus(lines), PGRES_TUPLES_OK);
    assert_int_equal(PQresultStatus(rows), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(lines), 2 * PER_THREAD);
    assert_int_equal(PQntuples(rows), 2 * PER_THREAD);
    for (int i = 0; i < PQntuples(rows); i++) {
        char *json = NULL, want[128];
        assert_int_equal(ap_avro_decode_to_json(rig.codec, PQgetvalue(rows, i, 0),
                                                (size_t)PQgetlength(rows, i, 0), &json, why,
                                                sizeof why),
                         AP_OK);
        snprintf(want, sizeof want, "\"%s\"", PQgetvalue(lines, i, 0));
        if (!strstr(json, want))
            fail_msg("outbox row %d is %s, but allocation %d is %s", i, json, i, want);
        free(json);
    }
    PQclear(lines);
    PQclear(rows);
    PQfinish(conn);
    rig_release(&rig);
}

/* Commits a batch of `ref` and `orders` allocations from it, in one transaction, and puts the
 * ids of the outbox rows they wrote (BatchCreated, then each Allocated) in ids[]. */
static void write_events(rig_t *rig, const char *sku, const char *ref, int orders,
                         PGconn *conn, int64_t *ids)
{
    ap_uow_t *uow = rig->app.deps.uow;
    ap_msg_t cmd;
    char orderid[16];

    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_msg_create_batch(&cmd, ref, sku, 10, false, 0);
    execute(rig, &cmd);
    for (int i = 1; i <= orders; i++) {
        snprintf(orderid, sizeof orderid, "o%d", i);
        ap_msg_allocate(&cmd, orderid, sku, 3);
        execute(rig, &cmd);
    }
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    const char *params[1] = {rig->prefix};
    PGresult *res = PQexecParams(conn,
                                 "SELECT id FROM outbox WHERE topic LIKE $1 || '.%' ORDER BY id", 1,
                                 NULL, params, NULL, NULL, 0);
    assert_int_equal(PQntuples(res), orders + 1);
    for (int i = 0; i <= orders; i++)
        ids[i] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    PQclear(res);
}

/*
 * The backlog is measured from a floor that follows the oldest row, so rows the relay deleted
 * are not walked again: with a snapshot held open elsewhere they stay in the table and its
 * index, and a count from the front slowed every consumer batch down (tests/chaos/
 * held_snapshot.sh measured half a second per count at 200,000 such rows).
 */
static void test_backlog_counts_from_the_oldest_row(void **state)
{
    rig_t rig;
    char sku[128], ref[128];
    ap_outbox_backlog_t b;
    int64_t from = 0, ids[2];
    PGconn *conn = connect_db(), *holder = connect_db();
    (void)state;

    rig_init_fresh(&rig, "backlog", sku, ref);
    assert_int_equal(ap_outbox_backlog(rig.outbox, 0, 1000000, &from, &b), AP_OK);
    assert_true(from > 0 && b.rows >= 0 && b.oldest_ms >= 0);

    /* Two rows of ours: BatchCreated, Allocated. */
    write_events(&rig, sku, ref, 1, conn, ids);
    assert_true(ids[0] >= from);

    /* A snapshot held elsewhere keeps what is deleted from now on in the table. */
    PQclear(PQexec(holder, "BEGIN ISOLATION LEVEL REPEATABLE READ"));
    PGresult *res = PQexec(holder, "SELECT count(*) FROM outbox");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);

    /* The floor is the oldest of ours, then the next one as the relay deletes them, then past
     * both: deleted rows never count again. Counted (count_above 0) and as a span alike. */
    from = ids[0];
    for (int i = 0; i < 2; i++) {
        int64_t span_from = from;
        assert_int_equal(ap_outbox_backlog(rig.outbox, 0, 1000000, &from, &b), AP_OK);
        assert_int_equal(from, ids[i]);
        assert_true(b.counted);
        assert_true(b.rows >= 2 - i);
        assert_int_equal(ap_outbox_backlog(rig.outbox, INT64_MAX, 1000000, &span_from, &b),
                         AP_OK);
        assert_int_equal(span_from, ids[i]);
        assert_false(b.counted);
        assert_true(b.rows >= ids[1] - ids[i] + 1);
        char sql[96];
        snprintf(sql, sizeof sql, "DELETE FROM outbox WHERE id = %lld", (long long)ids[i]);
        PQclear(PQexec(conn, sql));
    }
    assert_int_equal(ap_outbox_backlog(rig.outbox, 0, 1000000, &from, &b), AP_OK);
    assert_true(from > ids[1]);

    /* Nothing at or past the floor: no rows, and the floor is the next id to be given. */
    int64_t beyond = INT64_MAX / 2;
    assert_int_equal(ap_outbox_backlog(rig.outbox, INT64_MAX, 1000000, &beyond, &b), AP_OK);
    assert_int_equal(b.rows, 0);
    assert_false(b.counted);
    assert_int_equal(b.oldest_ms, 0);
    assert_true(beyond > ids[1] && beyond < INT64_MAX / 2);

    PQclear(PQexec(holder, "COMMIT"));
    PQfinish(holder);
    PQfinish(conn);
    rig_release(&rig);
}

/*
 * The span bounds the rows waiting from above, and a count is made only when it passes
 * count_above: rows delivered behind an older one still waiting (as behind a record the relay
 * holds) are in the span, not in the count.
 */
static void test_backlog_counts_only_a_span_over_the_threshold(void **state)
{
    rig_t rig;
    char sku[128], ref[128];
    ap_outbox_backlog_t b;
    int64_t from = 0, ids[3];
    PGconn *conn = connect_db();
    (void)state;

    rig_init_fresh(&rig, "span", sku, ref);
    write_events(&rig, sku, ref, 2, conn, ids);

    /* The middle one delivered, the oldest still waiting. */
    char sql[96];
    snprintf(sql, sizeof sql, "DELETE FROM outbox WHERE id = %lld", (long long)ids[1]);
    PQclear(PQexec(conn, sql));

    /* From our oldest: a span of at least three ids, uncounted under a high threshold... */
    from = ids[0];
    assert_int_equal(ap_outbox_backlog(rig.outbox, INT64_MAX, 1000000, &from, &b), AP_OK);
    assert_int_equal(from, ids[0]);
    assert_false(b.counted);
    int64_t span = b.rows;
    assert_true(span >= ids[2] - ids[0] + 1);

    /* ...counted under a low one, which leaves out the delivered row. Other tests' rows may
     * come and go meanwhile, so the count is compared with a span taken right after it. */
    assert_int_equal(ap_outbox_backlog(rig.outbox, 1, 1000000, &from, &b), AP_OK);
    assert_true(b.counted);
    assert_true(b.rows >= 2);
    int64_t counted = b.rows;
    assert_int_equal(ap_outbox_backlog(rig.outbox, INT64_MAX, 1000000, &from, &b), AP_OK);
    assert_true(counted < b.rows);

    /* The count stops at its limit. */
    assert_int_equal(ap_outbox_backlog(rig.outbox, 1, 2, &from, &b), AP_OK);
    assert_true(b.counted);
    assert_int_equal(b.rows, 2);

    PQfinish(conn);
    rig_release(&rig);
}

/* ---------------------------------------------------------------- wake-ups */

/*
 * The notifications a LISTENing session `listener` receives up to and including the marker
 * `NOTIFY <channel>, 'marker'` that `sender` sends now: PostgreSQL delivers notifications in
 * commit order, so whatever an earlier commit sent arrives before the marker. Returns how many
 * came on `channel` with an empty payload before it (and on `other` into *others).
 */
static int wakes_before_marker(PGconn *listener, PGconn *sender, const char *channel,
                               const char *other, int *others)
{
    char sql[128];
    snprintf(sql, sizeof sql, "NOTIFY %s, 'marker'", channel);
    PGresult *res = PQexec(sender, sql);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);

    int wakes = 0;
    *others = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        assert_int_equal(PQconsumeInput(listener), 1);
        PGnotify *note;
        while ((note = PQnotifies(listener))) {
            bool marker = strcmp(note->extra, "marker") == 0;
            if (!marker && strcmp(note->relname, channel) == 0)
                wakes++;
            else if (!marker && strcmp(note->relname, other) == 0)
                (*others)++;
            PQfreemem(note);
            if (marker)
                return wakes;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        assert_true(now.tv_sec - start.tv_sec < 10); /* the marker must come */
        struct pollfd fd = {.fd = PQsocket(listener), .events = POLLIN};
        (void)poll(&fd, 1, 100);
    }
}

/* The wake-ups of both channels so far must be `outbox` and `outcomes`. */
static void expect_wakes(PGconn *listener, PGconn *sender, int outbox, int outcomes)
{
    int others;
    assert_int_equal(wakes_before_marker(listener, sender, "outbox", "command_outcomes", &others),
                     outbox);
    assert_int_equal(others, outcomes);
}

static PGconn *listen_on(const char *sql)
{
    PGconn *conn = connect_db();
    PGresult *res = PQexec(conn, sql);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    return conn;
}

/* The uow's commit wakes the relay and the HTTP waiters once each, after it committed; its
 * transaction itself notifies nothing (the triggers stay quiet for its session), and a
 * rollback wakes no one. Other writers are still woken for by the triggers. */
static void test_commit_wakes_the_listeners_after_it(void **state)
{
    rig_t rig;
    char sku[128], ref[128];
    ap_msg_t cmd;
    (void)state;

    rig_init_fresh(&rig, "wake", sku, ref);
    ap_uow_t *uow = rig.app.deps.uow;
    PGconn *listener = listen_on("LISTEN outbox; LISTEN command_outcomes");
    PGconn *sender = connect_db();

    /* A commit that wrote outbox and outcome rows: one wake-up on each channel. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_msg_create_batch(&cmd, ref, sku, 10, false, 0);
    execute(&rig, &cmd);
    ap_command_outcome_t outcome = {.kind = AP_OUTCOME_APPLIED};
    snprintf(outcome.message_id, sizeof outcome.message_id, "%s-id", ref);
    snprintf(outcome.command_type, sizeof outcome.command_type, "CreateBatch");
    assert_int_equal(ap_outcomes_record(uow, &outcome, 1), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    expect_wakes(listener, sender, 1, 1);

    /* Only outbox rows: no wake-up for the HTTP waiters. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_msg_allocate(&cmd, "o1", sku, 1);
    execute(&rig, &cmd);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    expect_wakes(listener, sender, 1, 0);

    /* Rolled back: nothing. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_msg_allocate(&cmd, "o2", sku, 1);
    execute(&rig, &cmd);
    ap_uow_rollback(uow);
    expect_wakes(listener, sender, 0, 0);

    /* Another writer, who never set allocation.wake_after_commit: the triggers wake, each
     * on its table's channel. */
    PGresult *res = PQexec(sender, "INSERT INTO outbox (topic, key, value) "
                                   "VALUES ('wake.elsewhere', 'k', 'v')");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    expect_wakes(listener, sender, 1, 0);
    PQclear(PQexec(sender, "DELETE FROM outbox WHERE topic = 'wake.elsewhere'"));
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO command_outcomes (message_id, command_type, outcome) "
             "VALUES ('%s-elsewhere', 'Allocate', 'applied')", ref);
    res = PQexec(sender, sql);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    expect_wakes(listener, sender, 0, 1);

    PQfinish(sender);
    PQfinish(listener);
    rig_release(&rig);
}

int main(void)
{
    ap_test_migrated_db("test_outbox");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_commit_with_the_transaction),
        cmocka_unit_test(test_rejection_and_dead_letter_rows_are_byte_exact),
        cmocka_unit_test(test_deferred_rows_are_byte_exact),
        cmocka_unit_test(test_rows_of_one_sku_follow_commit_order),
        cmocka_unit_test(test_backlog_counts_from_the_oldest_row),
        cmocka_unit_test(test_backlog_counts_only_a_span_over_the_threshold),
        cmocka_unit_test(test_commit_wakes_the_listeners_after_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
