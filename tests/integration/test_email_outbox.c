/*
 * test_email_outbox.c - the email outbox against a real PostgreSQL: an out-of-stock email
 * row commits with its command (deferred or not) and vanishes with a rollback; the sender's
 * session takes only its own origin's due rows, never one another session holds, deletes a
 * sent row and pushes a failed one back.
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
#include <libpq-fe.h>

#include "ap/bootstrap.h"
#include "ap/email.h"
#include "ap/log.h"
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
    snprintf(buf, size, "email-%s-%d-%ld-%u", what, (int)getpid(), (long)ts.tv_nsec, ++counter);
}

/* Production's wiring of the notifier: a pg uow with the email outbox writing through it. */
static void app_init(ap_app_t *app, const char *origin)
{
    ap_uow_t *uow;
    ap_notifier_t *notifier;
    assert_int_equal(ap_pg_uow_new(db_url(), &uow), AP_OK);
    assert_int_equal(ap_pg_email_outbox_new(uow, origin, &notifier), AP_OK);
    assert_int_equal(ap_bootstrap(app, uow, ap_fake_publisher_new(), notifier,
                                  ap_system_clock_new(), "buyers@example.com"),
                     AP_OK);
}

static long count_rows(PGconn *conn, const char *origin)
{
    const char *params[1] = {origin};
    PGresult *res = PQexecParams(conn, "SELECT count(*) FROM email_outbox WHERE origin = $1",
                                 1, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    long n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return n;
}

static void execute(ap_app_t *app, ap_msg_t cmd)
{
    char why[256];
    assert_int_equal(ap_bus_execute(&app->bus, &cmd, why, sizeof why), AP_OK);
}

/* A batch of 1 and an order of 2 for a new sku: one OutOfStock, one email. */
static void out_of_stock(ap_app_t *app, const char *sku)
{
    ap_msg_t cmd;
    char ref[200];
    snprintf(ref, sizeof ref, "%s-b", sku);
    ap_msg_create_batch(&cmd, ref, sku, 1, false, 0);
    execute(app, cmd);
    ap_msg_allocate(&cmd, "o1", sku, 2);
    execute(app, cmd);
}

static void check_rows_commit_with_the_transaction(bool deferred)
{
    ap_app_t app;
    char origin[96], sku[128];
    PGconn *conn = PQconnectdb(db_url());
    assert_int_equal(PQstatus(conn), CONNECTION_OK);

    uniq(origin, sizeof origin, "tx");
    uniq(sku, sizeof sku, "sku");
    app_init(&app, origin);
    ap_uow_t *uow = app.deps.uow;
    uow->defer_writes = deferred;

    assert_int_equal(ap_uow_begin(uow), AP_OK);
    out_of_stock(&app, sku);
    ap_uow_rollback(uow);
    assert_int_equal(count_rows(conn, origin), 0);

    assert_int_equal(ap_uow_begin(uow), AP_OK);
    out_of_stock(&app, sku);
    assert_int_equal(count_rows(conn, origin), 0); /* not committed yet */
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(count_rows(conn, origin), 1);

    const char *params[1] = {origin};
    PGresult *res = PQexecParams(conn,
                                 "SELECT recipient, subject, body, attempts FROM email_outbox "
                                 "WHERE origin = $1",
                                 1, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    char want[300];
    assert_string_equal(PQgetvalue(res, 0, 0), "buyers@example.com");
    snprintf(want, sizeof want, "Out of stock: %s", sku);
    assert_string_equal(PQgetvalue(res, 0, 1), want);
    snprintf(want, sizeof want, "Out of stock for %s", sku);
    assert_string_equal(PQgetvalue(res, 0, 2), want);
    assert_string_equal(PQgetvalue(res, 0, 3), "0");
    PQclear(res);
    ap_app_release(&app);
    PQfinish(conn);
}

static void test_rows_commit_with_the_transaction(void **state)
{
    (void)state;
    check_rows_commit_with_the_transaction(false);
}

static void test_deferred_rows_commit_with_the_transaction(void **state)
{
    (void)state;
    check_rows_commit_with_the_transaction(true);
}

static void test_sender_sessions_take_send_and_retry(void **state)
{
    ap_app_t app, other;
    char origin[96], other_origin[96], sku[128];
    ap_email_row_t row, row2;
    bool found = false;
    (void)state;

    uniq(origin, sizeof origin, "queue");
    uniq(other_origin, sizeof other_origin, "other");
    app_init(&app, origin);
    app_init(&other, other_origin);
    for (int i = 0; i < 2; i++) {
        uniq(sku, sizeof sku, "sku");
        out_of_stock(&app, sku);
    }
    uniq(sku, sizeof sku, "sku");
    out_of_stock(&other, sku);

    ap_email_queue_t *a = ap_pg_email_queue_new(db_url(), origin);
    ap_email_queue_t *b = ap_pg_email_queue_new(db_url(), origin);
    assert_int_equal(ap_email_queue_connect(a), AP_OK);
    assert_int_equal(ap_email_queue_connect(b), AP_OK);

    /* Two sessions never hold the same row. */
    assert_int_equal(ap_email_queue_take(a, &row, &found), AP_OK);
    assert_true(found);
    int64_t first = row.id;
    assert_int_equal(row.attempts, 0);
    assert_int_equal(strlen(row.event_id), 36);
    assert_string_equal(row.to, "buyers@example.com");
    assert_int_equal(ap_email_queue_take(b, &row2, &found), AP_OK);
    assert_true(found);
    assert_true(row2.id != first);
    int64_t second = row2.id;

    /* b's row failed: back in a while, with the attempt counted. */
    assert_int_equal(ap_email_queue_retry(b, second, 60000, "smtp://x:25: refused"), AP_OK);
    /* a's row was sent: gone. */
    assert_int_equal(ap_email_queue_sent(a, first), AP_OK);

    /* Nothing of ours is due now (the other origin's row is not ours). */
    assert_int_equal(ap_email_queue_take(a, &row, &found), AP_OK);
    assert_false(found);
    PGconn *conn = PQconnectdb(db_url());
    assert_int_equal(count_rows(conn, origin), 1);
    assert_int_equal(count_rows(conn, other_origin), 1);

    /* Due again: taken with its attempt count; released untouched, it stays. */
    char id_text[32];
    snprintf(id_text, sizeof id_text, "%lld", (long long)second);
    const char *params[1] = {id_text};
    PGresult *res = PQexecParams(conn,
                                 "UPDATE email_outbox SET next_attempt_at = now() - interval "
                                 "'1 second' WHERE id = $1::bigint RETURNING last_error",
                                 1, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(res, 0, 0), "smtp://x:25: refused");
    PQclear(res);
    assert_int_equal(ap_email_queue_take(a, &row, &found), AP_OK);
    assert_true(found);
    assert_int_equal(row.id, second);
    assert_int_equal(row.attempts, 1);
    ap_email_queue_release(a);
    assert_int_equal(count_rows(conn, origin), 1);
    assert_int_equal(ap_email_queue_take(b, &row, &found), AP_OK);
    assert_true(found);
    assert_int_equal(ap_email_queue_sent(b, row.id), AP_OK);
    assert_int_equal(count_rows(conn, origin), 0);

    /* A committed row wakes a waiting session (LISTEN email_outbox). */
    uniq(sku, sizeof sku, "sku");
    out_of_stock(&app, sku);
    assert_int_equal(ap_email_queue_wait(a, 2000), AP_OK);
    assert_int_equal(ap_email_queue_take(a, &row, &found), AP_OK);
    assert_true(found);
    assert_int_equal(ap_email_queue_sent(a, row.id), AP_OK);

    res = PQexecParams(conn, "DELETE FROM email_outbox WHERE origin = $1", 1, NULL,
                       (const char *[]){other_origin}, NULL, NULL, 0);
    PQclear(res);
    PQfinish(conn);
    ap_email_queue_free(a);
    ap_email_queue_free(b);
    ap_app_release(&app);
    ap_app_release(&other);
}

int main(void)
{
    ap_test_migrated_db("test_email_outbox");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_commit_with_the_transaction),
        cmocka_unit_test(test_deferred_rows_commit_with_the_transaction),
        cmocka_unit_test(test_sender_sessions_take_send_and_retry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
