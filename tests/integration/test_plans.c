/*
 * test_plans.c - the processor's prepared statements (pg_statements.c and the other adapters')
 * keep their cost per call independent of history, even under the plan PostgreSQL caches.
 *
 * A prepared statement soon runs on a generic plan, and one made while a table is empty (a
 * new deployment, a fresh benchmark database) or before its first ANALYZE may read the whole
 * table on every call: that is how the idempotency check once read every command ever seen.
 * So each statement is planned here as a generic plan (plan_cache_mode =
 * force_generic_plan) on a database of its own, freshly migrated, holding a few thousand
 * rows that were never analyzed, and none may scan a table that grows with history, nor
 * intersect two of its indexes (a BitmapAnd reads every entry that matches each condition:
 * the lookup of an order's lines once read every line of the order's batch that way). Two
 * control statements, the idempotency check and the lookup of orders as they were, must
 * show a whole-table read and an intersection, so the check is known to see both.
 *
 * The statements are the unit of work's own (pg_stmts) and every other adapter's
 * (pg_internal.h: the outbox's, the relay's, the email outbox's and sender's, the outcomes'),
 * and a last test checks that the unit of work's session, having run what a consumer's batch
 * runs, holds no prepared statement outside those lists.
 *
 * Not covered: tables analyzed while empty (someone runs ANALYZE on a new database). Then
 * the planner believes every table empty and any plan may scan, whatever the SQL; that lasts
 * until autovacuum analyzes again, after about 50 changed rows.
 *
 * A missing DATABASE_URL is a failure, not a skip. The role must be allowed CREATE DATABASE
 * (the local and CI servers' postgres role is).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "adapters/pg_internal.h"
#include "adapters/pg_uow_internal.h"
#include "ap/avro.h"
#include "ap/bootstrap.h"
#include "ap/email.h"
#include "ap/log.h"
#include "ap/log_adapters.h"
#include "ap/outbox.h"
#include "ap/outcomes.h"
#include "ap/pg.h"
#include "support.h"

/* Tables whose rows grow with every command, with the catalog (products) or with a backlog
 * (the outboxes): no statement may read one whole. */
static const char *const history_tables[] = {"allocations", "allocations_view",
                                             "command_outcomes", "batches", "products",
                                             "consumer_offsets", "outbox", "email_outbox",
                                             NULL};

static char database[64];
static char *plans_url; /* DATABASE_URL naming `database` */

static PGconn *connect_to(const char *conninfo)
{
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK)
        fail_msg("cannot connect: %s", PQerrorMessage(conn));
    return conn;
}

static void exec_ok(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(conn));
    PQclear(res);
}

/* A database of our own, migrated, never analyzed; dropped by drop_database. */
static int create_database(void **state)
{
    (void)state;
    const char *url = getenv("DATABASE_URL");
    if (!url || !*url)
        fail_msg("DATABASE_URL is not set (deploy/local/services.sh env gives it)");
    snprintf(database, sizeof database, "ap_plans_%ld_%ld", (long)getpid(), (long)time(NULL));
    char sql[160];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", database);
    PGconn *conn = connect_to(url);
    exec_ok(conn, sql);
    PQfinish(conn);

    char *why = NULL;
    if (!(plans_url = ap_test_conninfo_with(url, "dbname", database, &why)))
        fail_msg("DATABASE_URL does not parse: %s", why ? why : "out of memory");
    int applied = 0;
    assert_int_equal(ap_pg_migrate(plans_url, &applied), AP_OK);
    assert_true(applied > 0);

    /* Some history, never analyzed: what the first minutes of a deployment look like. */
    conn = connect_to(plans_url);
    for (const char *const *table = history_tables; *table; table++) {
        snprintf(sql, sizeof sql, "ALTER TABLE %s SET (autovacuum_enabled = false)", *table);
        exec_ok(conn, sql);
    }
    exec_ok(conn, "INSERT INTO products (sku, version_number)"
                  " SELECT 'sku-' || g, 1 FROM generate_series(1, 1000) g");
    exec_ok(conn, "INSERT INTO batches (reference, sku, purchased_quantity, eta)"
                  " SELECT 'batch-' || g, 'sku-' || (g % 1000 + 1), 1000000, NULL"
                  "   FROM generate_series(1, 2000) g");
    exec_ok(conn, "INSERT INTO allocations (batch_id, orderid, qty)"
                  " SELECT b.id, 'order-' || g, 1 FROM generate_series(1, 20000) g"
                  "   JOIN batches b ON b.reference = 'batch-' || (g % 2000 + 1)");
    exec_ok(conn, "INSERT INTO allocations_view (orderid, sku, batchref)"
                  " SELECT 'order-' || g, 'sku-1', 'batch-1' FROM generate_series(1, 4000) g");
    exec_ok(conn, "INSERT INTO command_outcomes (message_id, command_type, outcome)"
                  " SELECT 'message-' || g, 'Allocate', 'applied'"
                  "   FROM generate_series(1, 4000) g");
    PQfinish(conn);
    return 0;
}

static int drop_database(void **state)
{
    (void)state;
    if (database[0]) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", database);
        PGconn *conn = connect_to(getenv("DATABASE_URL"));
        exec_ok(conn, sql);
        PQfinish(conn);
    }
    free(plans_url);
    return 0;
}

/* A session that plans every prepared statement generically. */
static PGconn *generic_session(void)
{
    PGconn *conn = connect_to(plans_url);
    exec_ok(conn, "SET plan_cache_mode = force_generic_plan");
    return conn;
}

/*
 * Prepares `sql` as `name` and writes its generic plan (EXPLAIN EXECUTE with every
 * parameter NULL: a generic plan does not look at the values) into `plan`.
 */
static void generic_plan(PGconn *conn, const char *name, const char *sql, char *plan,
                         size_t size)
{
    PGresult *res = PQprepare(conn, name, sql, 0, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s: cannot prepare: %s", name, PQerrorMessage(conn));
    PQclear(res);
    res = PQdescribePrepared(conn, name);
    int nparams = PQnparams(res);
    PQclear(res);

    char explain[512];
    int len = snprintf(explain, sizeof explain, "EXPLAIN EXECUTE %s", name);
    for (int i = 0; i < nparams; i++)
        len += snprintf(explain + len, sizeof explain - (size_t)len, "%sNULL", i ? ", " : "(");
    snprintf(explain + len, sizeof explain - (size_t)len, "%s", nparams ? ")" : "");
    assert_true((size_t)len + 2 < sizeof explain);

    res = PQexec(conn, explain);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", explain, PQerrorMessage(conn));
    size_t used = 0;
    plan[0] = '\0';
    for (int row = 0; row < PQntuples(res) && used + 1 < size; row++)
        used += (size_t)snprintf(plan + used, size - used, "%s\n", PQgetvalue(res, row, 0));
    PQclear(res);
}

/* What in `plan` grows with history: a history table read whole, or an intersection of
 * index scans; NULL for neither. */
static const char *history_read(const char *plan)
{
    static char what[96];
    char needle[64];
    for (const char *const *table = history_tables; *table; table++) {
        snprintf(needle, sizeof needle, "Seq Scan on %s ", *table);
        if (!strstr(plan, needle))
            snprintf(needle, sizeof needle, "Seq Scan on %s\n", *table);
        if (strstr(plan, needle)) {
            snprintf(what, sizeof what, "reads %s whole", *table);
            return what;
        }
    }
    if (strstr(plan, "BitmapAnd"))
        return "intersects index scans (BitmapAnd)";
    return NULL;
}

/* The generic plan of control statement `sql` must show `expected` (history_read's answer). */
static void control_shows(const char *name, const char *sql, const char *expected)
{
    PGconn *conn = generic_session();
    char plan[8192];
    generic_plan(conn, name, sql, plan, sizeof plan);
    PQfinish(conn);
    const char *what = history_read(plan);
    if (!what || strcmp(what, expected) != 0)
        fail_msg("the %s statement's generic plan should show that it %s, but the check "
                 "says %s:\n%s", name, expected, what ? what : "nothing", plan);
}

static void test_the_check_sees_a_whole_table_read(void **state)
{
    (void)state;
    /* The idempotency check as it once was. */
    control_shows("control_outcomes",
                  "SELECT message_id FROM command_outcomes WHERE message_id = ANY($1::text[])",
                  "reads command_outcomes whole");
}

static void test_the_check_sees_an_intersection(void **state)
{
    (void)state;
    /* The lookup of orders' lines as it once was: each batch of the sku, then its lines that
     * have the order id, which this database's planner finds by intersecting the primary key
     * (the batch's lines) with the orderid index. */
    control_shows("control_orders",
                  "SELECT u.ord, l.reference, l.id, l.orderid, l.qty"
                  "  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY"
                  "       AS u(sku, orderid, ord)"
                  " CROSS JOIN LATERAL"
                  "       (SELECT b.reference, a.id, a.orderid, a.qty"
                  "          FROM allocations a JOIN batches b ON b.id = a.batch_id"
                  "         WHERE a.orderid = u.orderid AND b.sku = u.sku OFFSET 0) l"
                  " ORDER BY u.ord, l.id",
                  "intersects index scans (BitmapAnd)");
}

/* The adapters' statements beside pg_stmts (pg_internal.h). */
static const ap_pg_prepared_t *const adapter_tables[] = {
    ap_pg_outbox_statements,
    ap_pg_outbox_reader_statements,
    ap_pg_email_outbox_statements,
    ap_pg_email_queue_statements,
    ap_pg_outcome_statements,
    NULL,
};

/* 1 when the generic plan of `sql` reads history (printed with the plan), else 0. */
static int reads_history(PGconn *conn, const char *name, const char *sql)
{
    char plan[8192];
    generic_plan(conn, name, sql, plan, sizeof plan);
    const char *what = history_read(plan);
    if (!what)
        return 0;
    print_error("%s %s in its generic plan:\n%s\n", name, what, plan);
    return 1;
}

/* The i-th statement checked here, from 0: pg_stmts, then the adapters' tables (`adapter`
 * says which); false past the last. */
static bool checked_statement(size_t i, const char **name, const char **sql, bool *adapter)
{
    if (i < ST__COUNT) {
        *name = pg_stmts[i].name;
        *sql = pg_stmts[i].sql;
        *adapter = false;
        return true;
    }
    i -= ST__COUNT;
    for (const ap_pg_prepared_t *const *table = adapter_tables; *table; table++) {
        for (const ap_pg_prepared_t *st = *table; st->name; st++) {
            if (i-- == 0) {
                *name = st->name;
                *sql = st->sql;
                *adapter = true;
                return true;
            }
        }
    }
    return false;
}

/* How many of the statements read history in their generic plan; *checked counts them. */
static int statements_reading_history(int *checked)
{
    PGconn *conn = generic_session();
    const char *name, *sql;
    bool adapter;
    int bad = 0;
    size_t i = 0;
    for (; checked_statement(i, &name, &sql, &adapter); i++)
        bad += reads_history(conn, name, sql);
    PQfinish(conn);
    *checked = (int)i;
    return bad;
}

static void test_no_statement_reads_history(void **state)
{
    (void)state;
    int checked = 0;
    assert_int_equal(statements_reading_history(&checked), 0);
    assert_int_equal(checked, ST__COUNT + 13); /* and the adapters' 13 */
}

/* Where `sql` is among the statements checked above: its name, or NULL. */
static const char *checked_name(const char *sql, bool *adapter)
{
    const char *name, *other;
    for (size_t i = 0; checked_statement(i, &name, &other, adapter); i++) {
        if (strcmp(other, sql) == 0)
            return name;
    }
    return NULL;
}

/*
 * The check above sees every statement the unit of work's session prepares: the session of
 * a wiring like production's (outbox, email outbox, outcomes) runs what a consumer's batch
 * does, both deferred and not, and each statement it then holds is one of the lists. A
 * statement an adapter sends through the unit of work without listing it fails here.
 */
static void test_the_session_prepares_only_checked_statements(void **state)
{
    (void)state;
    ap_avro_codec_t *codec = NULL;
    ap_uow_t *uow = NULL;
    ap_outbox_t *outbox = NULL;
    ap_notifier_t *notifier = NULL;
    ap_app_t app;
    assert_int_equal(ap_avro_codec_new(AP_WIRE_SINGLE_OBJECT, &codec), AP_OK);
    assert_int_equal(ap_pg_uow_new(plans_url, &uow), AP_OK);
    assert_int_equal(ap_pg_outbox_new(uow, codec, "plans", &outbox), AP_OK);
    assert_int_equal(ap_pg_email_outbox_new(uow, "plans", &notifier), AP_OK);
    assert_int_equal(ap_bootstrap(&app, uow, ap_outbox_publisher(outbox), notifier,
                                  ap_system_clock_new(), "buyer@example.com"),
                     AP_OK);

    char why[256];
    ap_msg_t cmd;
    for (int deferred = 0; deferred < 2; deferred++) {
        char sku[32], ref[32], order[32], id[32];
        snprintf(sku, sizeof sku, "plans-sku-%d", deferred);
        snprintf(ref, sizeof ref, "plans-ref-%d", deferred);
        uow->defer_writes = deferred;
        assert_int_equal(ap_uow_begin(uow), AP_OK);
        bool seen[1];
        const char *ids[1] = {id};
        snprintf(id, sizeof id, "plans-message-%d", deferred);
        assert_int_equal(ap_outcomes_seen(uow, ids, 1, seen), AP_OK);
        assert_false(seen[0]);
        assert_int_equal(ap_msg_create_batch(&cmd, ref, sku, 10, false, 0), AP_OK);
        assert_int_equal(ap_bus_execute(&app.bus, &cmd, why, sizeof why), AP_OK);
        for (int i = 0; i < 3; i++) { /* 4, 4, then out of stock: an email */
            snprintf(order, sizeof order, "plans-order-%d-%d", deferred, i);
            assert_int_equal(ap_msg_allocate(&cmd, order, sku, 4), AP_OK);
            assert_int_equal(ap_bus_execute(&app.bus, &cmd, why, sizeof why), AP_OK);
        }
        ap_command_outcome_t outcome = {.kind = AP_OUTCOME_APPLIED};
        snprintf(outcome.message_id, sizeof outcome.message_id, "%s", id);
        snprintf(outcome.command_type, sizeof outcome.command_type, "Allocate");
        assert_int_equal(ap_outcomes_record(uow, &outcome, 1), AP_OK);
        int64_t from = 0;
        ap_outbox_backlog_t backlog;
        assert_int_equal(ap_outbox_backlog(outbox, 0, 1000, &from, &backlog), AP_OK);
        assert_int_equal(ap_uow_commit(uow), AP_OK);
    }
    uow->defer_writes = false;

    PGresult *res = PQexec(container_of(uow, pg_uow_t, uow)->conn,
                           "SELECT name, statement FROM pg_prepared_statements ORDER BY name");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    int unchecked = 0, adapters = 0;
    for (int row = 0; row < PQntuples(res); row++) {
        bool adapter = false;
        const char *name = checked_name(PQgetvalue(res, row, 1), &adapter);
        if (!name) {
            print_error("%s is not among the checked statements:\n%s\n", PQgetvalue(res, row, 0),
                        PQgetvalue(res, row, 1));
            unchecked++;
        }
        adapters += name && adapter;
    }
    PQclear(res);
    ap_app_release(&app);
    ap_avro_codec_free(codec);
    assert_int_equal(unchecked, 0);
    /* The outbox's three, the email outbox's two and the outcomes' two were run. */
    assert_int_equal(adapters, 7);
}

int main(void)
{
    ap_log_setup(AP_LOG_WARN, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_check_sees_a_whole_table_read),
        cmocka_unit_test(test_the_check_sees_an_intersection),
        cmocka_unit_test(test_no_statement_reads_history),
        cmocka_unit_test(test_the_session_prepares_only_checked_statements),
    };
    return cmocka_run_group_tests(tests, create_database, drop_database);
}
