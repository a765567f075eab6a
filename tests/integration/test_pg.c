/*
 * test_pg.c - the PostgreSQL adapters (pg_uow.c, pg_views.c, pg_migrate.c) against a real
 * server at $DATABASE_URL: migrations, the repository, scopes and savepoints, optimistic
 * concurrency, the read model, consumer offsets and connection loss.
 *
 * A missing DATABASE_URL is a failure, not a skip. Every test makes its own skus, refs,
 * orders and consumer groups (suffixed with the pid, the time and a counter), so tests never
 * see each other's rows and the suite can run twice, or twice at once, on one database.
 * Tests go through the dispatchers (ap_uow_begin, ap_uow_get, ...), as the service layer does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "adapters/migrations.h"
#include "adapters/pg_internal.h"
#include "adapters/pg_uow_internal.h"
#include "ap/log.h"
#include "ap/model.h"
#include "ap/pg.h"
#include "support.h"
#include "ap/ports.h"

/* ---------------------------------------------------------------- helpers */

static const char *db_url(void)
{
    const char *url = getenv("DATABASE_URL");
    if (!url || !*url)
        fail_msg("DATABASE_URL is not set: point it at a PostgreSQL database "
                 "(deploy/local/services.sh env gives TEST_DATABASE_URL)");
    return url;
}

/* A name no other test (or run) uses: "<what>-<pid>-<time>-<n>". */
static void uniq(char *buf, size_t size, const char *what)
{
    static unsigned counter;
    snprintf(buf, size, "%s-%ld-%ld-%u", what, (long)getpid(), (long)time(NULL), ++counter);
}

/* The same as uniq, fit for an SQL identifier or application_name. */
static void uniq_ident(char *buf, size_t size, const char *what)
{
    uniq(buf, size, what);
    for (char *p = buf; *p; p++)
        if (*p == '-')
            *p = '_';
}

/* DATABASE_URL with one keyword replaced, as a keyword=value string. Caller frees. */
static char *conninfo_with(const char *key, const char *value)
{
    char *why = NULL;
    char *out = ap_test_conninfo_with(db_url(), key, value, &why);
    if (!out)
        fail_msg("DATABASE_URL does not parse: %s", why ? why : "out of memory");
    return out;
}

static ap_uow_t *new_uow(void)
{
    ap_uow_t *uow = NULL;
    assert_int_equal(ap_pg_uow_new(db_url(), &uow), AP_OK);
    assert_non_null(uow);
    return uow;
}

/* A plain libpq connection for checking rows behind the adapters' backs. */
static PGconn *admin(void)
{
    PGconn *conn = PQconnectdb(db_url());
    if (PQstatus(conn) != CONNECTION_OK)
        fail_msg("cannot connect to DATABASE_URL: %s", PQerrorMessage(conn));
    return conn;
}

/* Runs a one-parameter query that returns one number. */
static long long scalar(const char *sql, const char *param)
{
    PGconn *conn = admin();
    const char *params[] = {param};
    PGresult *res = PQexecParams(conn, sql, param ? 1 : 0, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        fail_msg("%s: %s", sql, PQerrorMessage(conn));
    long long value = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(conn);
    return value;
}

static void admin_exec(const char *sql)
{
    PGconn *conn = admin();
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(conn));
    PQclear(res);
    PQfinish(conn);
}

static void line_init(ap_order_line_t *line, const char *orderid, const char *sku, int64_t qty)
{
    assert_int_equal(ap_order_line_init(line, orderid, sku, qty), AP_OK);
}

/* Allocates as the handler does: with `uow` (NULL for a new product, which knows all its
 * lines), the lines of the order come from storage first. */
static void allocate(ap_uow_t *uow, ap_product_t *product, const char *orderid, int64_t qty,
                     const char *expect_batch)
{
    ap_order_line_t line;
    const char *batchref = NULL;
    line_init(&line, orderid, product->sku, qty);
    if (uow)
        assert_int_equal(ap_uow_load_order(uow, product, orderid), AP_OK);
    assert_int_equal(ap_product_allocate(product, &line, &batchref), AP_OK);
    if (expect_batch) {
        assert_non_null(batchref);
        assert_string_equal(batchref, expect_batch);
    }
}

/* Commits a new product with one warehouse batch of `qty`, in a transaction of its own. */
static void store_product(const char *sku, const char *ref, int64_t qty)
{
    ap_uow_t *uow = new_uow();
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_product_t *product = ap_product_new(sku);
    assert_non_null(product);
    assert_int_equal(ap_product_add_batch(product, ref, qty, false, 0), AP_OK);
    assert_int_equal(ap_uow_add(uow, product), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_free(uow);
}

/* Changes a batch's quantity as the handler does: older lines come from storage as needed. */
static void change_qty(ap_uow_t *uow, ap_product_t *product, const char *ref, int64_t qty)
{
    ap_err_t err;
    while ((err = ap_product_change_batch_quantity(product, ref, qty)) == AP_ERR_NEED_LINES)
        assert_int_equal(ap_uow_load_older_lines(uow, product, ref), AP_OK);
    assert_int_equal(err, AP_OK);
}

/* One command's scope inside a batch transaction: get (or create), act, commit, collect. */
static ap_product_t *command_get(ap_uow_t *uow, const char *sku)
{
    ap_product_t *product = NULL;
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, sku, &product), AP_OK);
    return product;
}

static void command_end(ap_uow_t *uow)
{
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_forget(uow);
}
/* Brings every line of a handed-out product into memory
, through the partial loads. */
static void load_whole(ap_uow_t *uow, ap_product_t *product)
{
    for (size_t i = 0; i < product->nbatches; i++) {
        while (ap_batch_unknown_qty(&product->batches[i]) > 0)
            assert_int_equal(ap_uow_load_older_lines(uow, product, product->batches[i].ref),
                             AP_OK);
    }
    ap_product_mark_complete(product);
}

/* A copy of the stored product, every line in (caller frees), or NULL when there is none. */
static ap_product_t *fetch(const char *sku)
{
    ap_uow_t *uow = new_uow();
    ap_product_t *product = NULL, *copy = NULL;
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_err_t err = ap_uow_get(uow, sku, &product);
    if (err == AP_OK) {
        load_whole(uow, product);
        copy = ap_product_clone(product);
        assert_non_null(copy);
    } else {
        assert_int_equal(err, AP_ERR_NOT_FOUND);
    }
    ap_uow_rollback(uow);
    ap_uow_free(uow);
    return copy;
}

static long long view_rows(const char *orderid)
{
    return scalar("SELECT count(*) FROM allocations_view WHERE orderid = $1", orderid);
}

/* ---------------------------------------------------------------- migrations */

/* A scratch database, so migrations start from nothing. */
static char *create_scratch_db(char *name, size_t size)
{
    char sql[256];
    uniq_ident(name, size, "ap_scratch");
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    admin_exec(sql);
    return conninfo_with("dbname", name);
}

static void drop_scratch_db(const char *name)
{
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    admin_exec(sql);
}

static long long scratch_scalar(const char *conninfo, const char *sql)
{
    PGconn *conn = PQconnectdb(conninfo);
    assert_int_equal(PQstatus(conn), CONNECTION_OK);
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        fail_msg("%s: %s", sql, PQerrorMessage(conn));
    long long value = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(conn);
    return value;
}

/* Autovacuum's ANALYZE holds back pruning everywhere while it reads its sample (300 rows per
 * point of statistics target), so the tables that grow by a row a command keep a small target
 * on every column, including any a later migration adds (schemas/sql/009_short_analyze.sql):
 * test_migrate_twice checks it. */
#define HISTORY_COLUMNS                                                                     \
    " FROM pg_attribute WHERE attnum > 0 AND NOT attisdropped AND attrelid IN"              \
    " (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace"                \
    "  AND relname IN ('allocations', 'allocations_view', 'command_outcomes'))"

static void test_migrate_twice(void **state)
{
    (void)state;
    char name[128];
    char *conninfo = create_scratch_db(name, sizeof name);
    int applied = -1;

    assert_int_equal(ap_pg_migrate(conninfo, &applied), AP_OK);
    assert_int_equal(applied, (int)ap_migrations_count);
    assert_true(ap_migrations_count >= 1);
    assert_int_equal(ap_pg_migrate(conninfo, &applied), AP_OK);
    assert_int_equal(applied, 0);

    assert_int_equal(scratch_scalar(conninfo, "SELECT count(*) FROM schema_migrations"),
                     (long long)ap_migrations_count);
    assert_int_equal(scratch_scalar(conninfo, "SELECT count(*) FROM information_schema.tables"
                                              " WHERE table_schema = 'public' AND table_name IN"
                                              " ('products', 'batches', 'allocations',"
                                              "  'allocations_view', 'consumer_offsets')"),
                     5);
    assert_true(scratch_scalar(conninfo, "SELECT count(*)" HISTORY_COLUMNS) >= 16);
    assert_int_equal(scratch_scalar(conninfo, "SELECT count(*) FILTER (WHERE attstattarget"
                                              " NOT BETWEEN 0 AND 10)" HISTORY_COLUMNS),
                     0);
    free(conninfo);
    drop_scratch_db(name);
}

struct migrate_run {
    const char *conninfo;
    ap_err_t err;
    int applied;
};

static void *migrate_thread(void *arg)
{
    struct migrate_run *run = arg;
    run->err = ap_pg_migrate(run->conninfo, &run->applied);
    return NULL;
}

static void test_migrate_concurrently(void **state)
{
    (void)state;
    char name[128];
    char *conninfo = create_scratch_db(name, sizeof name);
    struct migrate_run runs[2] = {{conninfo, AP_ERR_INTERNAL, -1},
                                  {conninfo, AP_ERR_INTERNAL, -1}};
    pthread_t threads[2];

    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, migrate_thread, &runs[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);

    assert_int_equal(runs[0].err, AP_OK);
    assert_int_equal(runs[1].err, AP_OK);
    /* Each migration ran exactly once, in one of the two. */
    assert_int_equal(runs[0].applied + runs[1].applied, (int)ap_migrations_count);
    assert_int_equal(scratch_scalar(conninfo, "SELECT count(*) FROM schema_migrations"),
                     (long long)ap_migrations_count);
    free(conninfo);
    drop_scratch_db(name);
}

static void test_migrate_bad_server(void **state)
{
    (void)state;
    char *conninfo = conninfo_with("port", "1"); /* nothing listens there */
    int applied = -7;
    assert_int_equal(ap_pg_migrate(conninfo, &applied), AP_ERR_UNAVAILABLE);
    assert_int_equal(applied, -7);
    ap_uow_t *uow = NULL;
    assert_int_equal(ap_pg_uow_new(conninfo, &uow), AP_ERR_UNAVAILABLE);
    assert_null(uow);
    ap_views_t *views = NULL;
    assert_int_equal(ap_pg_views_new(conninfo, &views), AP_ERR_UNAVAILABLE);
    assert_null(views);
    free(conninfo);
}

/* ---------------------------------------------------------------- repository */

static void test_repository_round_trip(void **state)
{
    (void)state;
    char sku[96], warehouse[96], shipment[96];
    uniq(sku, sizeof sku, "LAMP");
    uniq(warehouse, sizeof warehouse, "b-warehouse");
    uniq(shipment, sizeof shipment, "b-shipment");

    ap_uow_t *uow = new_uow();
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_product_t *product = ap_product_new(sku);
    assert_non_null(product);
    assert_int_equal(ap_product_add_batch(product, shipment, 50, true, 20000), AP_OK);
    assert_int_equal(ap_product_add_batch(product, warehouse, 100, false, 0), AP_OK);
    allocate(uow, product, "o1", 10, warehouse);
    allocate(uow, product, "o2", 90, warehouse);
    allocate(uow, product, "o3", 5, shipment);
    allocate(uow, product, "o1", 10, NULL); /* the same line again: a no-op */
    int64_t version = product->version_number;
    assert_int_equal(ap_uow_add(uow, product), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_false(product->is_new);
    assert_int_equal(product->nchanges, 0);
    assert_int_equal(product->stored_version, version);
    ap_uow_free(uow);

    ap_product_t *loaded = fetch(sku);
    assert_non_null(loaded);
    assert_string_equal(loaded->sku, sku);
    assert_int_equal(loaded->version_number, version);
    assert_int_equal(loaded->stored_version, version);
    assert_false(loaded->is_new);
    assert_int_equal(loaded->nchanges, 0);
    assert_int_equal(loaded->nevents, 0);
    assert_int_equal(loaded->nbatches, 2);

    const ap_batch_t *b0 = &loaded->batches[0], *b1 = &loaded->batches[1];
    assert_string_equal(b0->ref, shipment); /* creation order, not preference order */
    assert_int_equal(b0->purchased_qty, 50);
    assert_true(b0->has_eta);
    assert_int_equal(b0->eta, 20000);
    assert_int_equal(b0->nlines, 1);
    assert_string_equal(ap_batch_line_orderid(b0, 0), "o3");
    assert_string_equal(b0->sku, sku);
    assert_int_equal(b0->lines[0].qty, 5);

    assert_string_equal(b1->ref, warehouse);
    assert_int_equal(b1->purchased_qty, 100);
    assert_false(b1->has_eta);
    assert_int_equal(b1->nlines, 2);
    assert_string_equal(ap_batch_line_orderid(b1, 0), "o1");
    assert_int_equal(b1->lines[0].qty, 10);
    assert_string_equal(ap_batch_line_orderid(b1, 1), "o2");
    assert_int_equal(b1->lines[1].qty, 90);
    ap_product_free(loaded);
}

static void test_repository_updates(void **state)
{
    (void)state;
    char sku[96], ref[96], later[96];
    uniq(sku, sizeof sku, "TABLE");
    uniq(ref, sizeof ref, "b-table");
    uniq(later, sizeof later, "b-later");
    store_product(sku, ref, 30);

    /* Allocate three lines, then shrink the batch: the newest lines go first. */
    ap_uow_t *uow = new_uow();
    ap_product_t *product = NULL;
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, sku, &product), AP_OK);
    assert_int_equal(product->version_number, 1);
    allocate(uow, product, "o1", 10, ref);
    allocate(uow, product, "o2", 10, ref);
    allocate(uow, product, "o3", 10, ref);
    change_qty(uow, product, ref, 15);
    assert_int_equal(ap_product_add_batch(product, later, 7, true, 19000), AP_OK);
    int64_t version = product->version_number;
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_free(uow);

    ap_product_t *loaded = fetch(sku);
    assert_non_null(loaded);
    assert_int_equal(loaded->version_number, version);
    assert_int_equal(loaded->nbatches, 2);
    assert_int_equal(loaded->batches[0].purchased_qty, 15);
    assert_int_equal(loaded->batches[0].nlines, 1);
    assert_string_equal(ap_batch_line_orderid(&loaded->batches[0], 0), "o1");
    assert_string_equal(loaded->batches[1].ref, later);
    assert_int_equal(loaded->batches[1].eta, 19000);
    ap_product_free(loaded);
    assert_int_equal(scalar("SELECT count(*) FROM allocations a JOIN batches b"
                            " ON b.id = a.batch_id WHERE b.sku = $1", sku),
                     1);
}

/* More writes than one pipeline chunk holds, and a second chunk. */
static void test_repository_many_changes(void **state)
{
    (void)state;
    char sku[96], ref[96], orderid[32];
    uniq(sku, sizeof sku, "SPOON");
    uniq(ref, sizeof ref, "b-spoon");

    ap_uow_t *uow = new_uow();
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_product_t *product = ap_product_new(sku);
    assert_non_null(product);
    assert_int_equal(ap_product_add_batch(product, ref, 1000, false, 0), AP_OK);
    for (int i = 0; i < 150; i++) {
        snprintf(orderid, sizeof orderid, "o%03d", i);
        allocate(NULL, product, orderid, 1 + i % 3, ref);
    }
    assert_int_equal(ap_uow_add(uow, product), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_free(uow);

    ap_product_t *loaded = fetch(sku);
    assert_non_null(loaded);
    assert_int_equal(loaded->version_number, 151);
    assert_int_equal(loaded->batches[0].nlines, 150);
    for (int i = 0; i < 150; i++) {
        snprintf(orderid, sizeof orderid, "o%03d", i);
        assert_string_equal(ap_batch_line_orderid(&loaded->batches[0], i), orderid);
        assert_int_equal(loaded->batches[0].lines[i].qty, 1 + i % 3);
    }
    ap_product_free(loaded);
}

/* Every batch of `sku` carries the sum of its lines' quantities. */
static void assert_allocated_matches_lines(const char *sku)
{
    assert_int_equal(scalar("SELECT count(*) FROM batches b WHERE b.sku = $1"
                            "   AND b.allocated_quantity <> coalesce((SELECT sum(qty)"
                            "       FROM allocations a WHERE a.batch_id = b.id), 0)",
                            sku),
                     0);
}

/*
 * A product with a long history: a load brings none of its lines, the idempotency check
 * reads one order's lines, and a decrease reads only the batch's newest ones; what it
 * stores keeps the batch's allocated quantity equal to its lines'.
 */
static void test_long_history_stays_in_storage(void **state)
{
    (void)state;
    enum { N = 3000 };
    char sku[96], ref[96], n[16];
    uniq(sku, sizeof sku, "HISTORIC");
    uniq(ref, sizeof ref, "b-historic");
    store_product(sku, ref, 5000);
    snprintf(n, sizeof n, "%d", N);
    /* The history, written straight into the tables, as years of commands would have. */
    char sql[512];
    snprintf(sql, sizeof sql,
             "WITH l AS (INSERT INTO allocations (batch_id, orderid, qty)"
             "           SELECT b.id, 'h' || g, 1 FROM batches b, generate_series(1, %d) g"
             "            WHERE b.reference = $1 ORDER BY g RETURNING 1),"
             "     u AS (UPDATE batches SET allocated_quantity = %d WHERE reference = $1)"
             " SELECT count(*) FROM l",
             N, N);
    assert_int_equal(scalar(sql, ref), N);

    /* One transaction, a scope per command, as the consumer runs a batch. */
    ap_uow_t *uow = new_uow();
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_product_t *product = command_get(uow, sku);
    assert_int_equal(product->batches[0].nlines, 0);
    assert_int_equal(ap_batch_allocated_qty(&product->batches[0]), N);
    int64_t version = product->version_number;
    allocate(uow, product, "h10", 1, NULL); /* allocated long ago: a no-op */
    assert_int_equal(product->nevents, 0);
    assert_int_equal(product->version_number, version);
    command_end(uow);
    product = command_get(uow, sku);
    allocate(uow, product, "new-1", 2, ref);
    command_end(uow);

    /* 3002 allocated, 2990 left: new-1, then h3000 down to h2991, leave. */
    product = command_get(uow, sku);
    change_qty(uow, product, ref, N - 10);
    assert_true(product->batches[0].nlines <= 17);
    size_t deallocated = 0;
    for (size_t i = 0; i < product->nevents; i++) {
        const ap_msg_t *event = &product->events[i];
        if (event->type != AP_EVT_DEALLOCATED)
            continue;
        char want[16];
        snprintf(want, sizeof want, "h%zu", (size_t)N + 1 - deallocated);
        assert_string_equal(event->orderid, deallocated == 0 ? "new-1" : want);
        deallocated++;
    }
    assert_int_equal(deallocated, 11);
    command_end(uow);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_free(uow);

    assert_allocated_matches_lines(sku);
    assert_int_equal(scalar("SELECT allocated_quantity FROM batches WHERE reference = $1", ref),
                     N - 10);
    assert_int_equal(scalar("SELECT count(*) FROM allocations a JOIN batches b"
                            " ON b.id = a.batch_id WHERE b.reference = $1"
                            "  AND (a.orderid = 'new-1' OR a.orderid = 'h2991')", ref),
                     0);
    assert_int_equal(scalar("SELECT count(*) FROM allocations a JOIN batches b"
                            " ON b.id = a.batch_id WHERE b.reference = $1"
                            "  AND a.orderid = 'h2990'", ref),
                     1);
}

static void test_load_by_batchref(void **state)
{
    (void)state;
    char sku[96], ref[96], other[96], missing[96];
    uniq(sku, sizeof sku, "CHAIR");
    uniq(ref, sizeof ref, "b-chair");
    uniq(other, sizeof other, "b-chair2");
    uniq(missing, sizeof missing, "b-missing");
    store_product(sku, ref, 20);

    ap_uow_t *uow = new_uow();
    ap_product_t *product = NULL, *again = NULL;
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get_by_batchref(uow, ref, &product), AP_OK);
    assert_string_equal(product->sku, sku);
    assert_int_equal(product->nbatches, 1);
    assert_string_equal(product->batches[0].ref, ref);
    assert_int_equal(product->batches[0].purchased_qty, 20);
    assert_int_equal(ap_product_add_batch(product, other, 5, false, 0), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_forget(uow);

    /* Any of the product's refs finds the whole product. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get_by_batchref(uow, other, &again), AP_OK);
    assert_string_equal(again->sku, sku);
    assert_int_equal(again->nbatches, 2);
    assert_int_equal(again->version_number, 2);
    assert_int_equal(ap_uow_get_by_batchref(uow, missing, &product), AP_ERR_NOT_FOUND);
    assert_int_equal(ap_uow_get(uow, missing, &product), AP_ERR_NOT_FOUND);
    ap_uow_rollback(uow);
    ap_uow_free(uow);
}

/* ---------------------------------------------------------------- scopes */

static void test_rollback_by_default(void **state)
{
    (void)state;
    char sku[96], ref[96], orderid[96];
    uniq(sku, sizeof sku, "SOFA");
    uniq(ref, sizeof ref, "b-sofa");
    uniq(orderid, sizeof orderid, "o-sofa");

    /* An explicit rollback. */
    ap_uow_t *uow = new_uow();
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_product_t *product = ap_product_new(sku);
    assert_non_null(product);
    assert_int_equal(ap_product_add_batch(product, ref, 10, false, 0), AP_OK);
    assert_int_equal(ap_uow_add(uow, product), AP_OK);
    assert_int_equal(ap_uow_view_add(uow, orderid, sku, ref), AP_OK);
    ap_uow_rollback(uow);
    ap_uow_free(uow);
    assert_null(fetch(sku));
    assert_int_equal(view_rows(orderid), 0);

    /* Leaving without commit (freeing with the scope open) rolls back too. */
    uow = new_uow();
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    product = ap_product_new(sku);
    assert_non_null(product);
    assert_int_equal(ap_product_add_batch(product, ref, 10, false, 0), AP_OK);
    assert_int_equal(ap_uow_add(uow, product), AP_OK);
    assert_int_equal(ap_uow_view_add(uow, orderid, sku, ref), AP_OK);
    ap_uow_free(uow);
    assert_null(fetch(sku));
    assert_int_equal(view_rows(orderid), 0);
}

static void test_rollback_on_error(void **state)
{
    (void)state;
    char sku[96], ref[96], thief[96], orderid[96];
    uniq(sku, sizeof sku, "DESK");
    uniq(ref, sizeof ref, "b-desk");
    uniq(thief, sizeof thief, "THIEF");
    uniq(orderid, sizeof orderid, "o-desk");
    store_product(sku, ref, 10);

    /* Another product reusing a stored batch ref: a unique violation at commit, which
     * undoes everything the transaction did and leaves the uow usable. */
    ap_uow_t *uow = new_uow();
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_view_add(uow, orderid, thief, ref), AP_OK);
    ap_product_t *product = ap_product_new(thief);
    assert_non_null(product);
    assert_int_equal(ap_product_add_batch(product, ref, 99, false, 0), AP_OK);
    assert_int_equal(ap_uow_add(uow, product), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_ERR_CONFLICT);
    assert_int_equal(uow->depth, 0);
    assert_null(fetch(thief));
    assert_int_equal(view_rows(orderid), 0);

    /* The same uow works afterwards. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, sku, &product), AP_OK);
    allocate(uow, product, orderid, 3, ref);
    assert_int_equal(ap_uow_view_add(uow, orderid, sku, ref), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_free(uow);
    assert_int_equal(view_rows(orderid), 1);
    ap_product_t *loaded = fetch(sku);
    assert_non_null(loaded);
    assert_int_equal(loaded->batches[0].nlines, 1);
    assert_int_equal(loaded->batches[0].purchased_qty, 10);
    ap_product_free(loaded);
}

static void test_savepoints(void **state)
{
    (void)state;
    char sku_a[96], sku_b[96], ref_a[96], ref_b[96], orderid[96];
    uniq(sku_a, sizeof sku_a, "RUG-A");
    uniq(sku_b, sizeof sku_b, "RUG-B");
    uniq(ref_a, sizeof ref_a, "b-rug-a");
    uniq(ref_b, sizeof ref_b, "b-rug-b");
    uniq(orderid, sizeof orderid, "o-rug");

    ap_uow_t *uow = new_uow();
    assert_int_equal(ap_uow_begin(uow), AP_OK); /* the transaction */

    /* Command A: its scope commits. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_product_t *product = ap_product_new(sku_a);
    assert_non_null(product);
    assert_int_equal(ap_product_add_batch(product, ref_a, 10, false, 0), AP_OK);
    assert_int_equal(ap_uow_add(uow, product), AP_OK);
    /* An event handler inside A, in a scope of its own. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(uow->depth, 3);
    assert_int_equal(ap_uow_view_add(uow, orderid, sku_a, ref_a), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_forget(uow);

    /* Command B: its scope rolls back, including a handler scope that had committed. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    product = ap_product_new(sku_b);
    assert_non_null(product);
    assert_int_equal(ap_product_add_batch(product, ref_b, 10, false, 0), AP_OK);
    assert_int_equal(ap_uow_add(uow, product), AP_OK);
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_view_add(uow, orderid, sku_b, ref_b), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_rollback(uow);

    /* Command C: a scope that fails on its own after B rolled back. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    product = ap_product_new(sku_b);
    assert_non_null(product);
    assert_int_equal(ap_product_add_batch(product, ref_a, 10, false, 0), AP_OK); /* A's ref */
    assert_int_equal(ap_uow_add(uow, product), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_ERR_CONFLICT);
    assert_int_equal(uow->depth, 1);

    /* A's writes are visible inside the transaction, and not outside it yet. */
    ap_product_t *seen = NULL;
    assert_int_equal(ap_uow_get(uow, sku_a, &seen), AP_OK);
    assert_int_equal(seen->nbatches, 1);
    ap_uow_forget(uow);
    assert_null(fetch(sku_a));

    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(uow->depth, 0);
    ap_uow_free(uow);

    ap_product_t *loaded = fetch(sku_a);
    assert_non_null(loaded);
    assert_string_equal(loaded->batches[0].ref, ref_a);
    ap_product_free(loaded);
    assert_null(fetch(sku_b));
    assert_int_equal(view_rows(orderid), 1);
    assert_int_equal(scalar("SELECT count(*) FROM allocations_view WHERE orderid = $1"
                            " AND sku = (SELECT sku FROM batches WHERE reference = batchref)",
                            orderid),
                     1);
}

/* An outer rollback undoes the inner scopes that committed. */
static void test_outer_rollback_undoes_inner_commits(void **state)
{
    (void)state;
    char sku[96], ref[96];
    uniq(sku, sizeof sku, "VASE");
    uniq(ref, sizeof ref, "b-vase");

    ap_uow_t *uow = new_uow();
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_product_t *product = ap_product_new(sku);
    assert_non_null(product);
    assert_int_equal(ap_product_add_batch(product, ref, 10, false, 0), AP_OK);
    assert_int_equal(ap_uow_add(uow, product), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_rollback(uow);
    assert_int_equal(uow->depth, 0);
    ap_uow_free(uow);
    assert_null(fetch(sku));
}

/* The batchrefs stored in the view for `orderid`, in id order, joined with ",". */
static void view_refs(const char *orderid, char *out, size_t size)
{
    PGconn *conn = admin();
    const char *params[] = {orderid};
    PGresult *res = PQexecParams(conn,
                                 "SELECT coalesce(string_agg(batchref, ',' ORDER BY id), '')"
                                 "  FROM allocations_view WHERE orderid = $1",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("view_refs: %s", PQerrorMessage(conn));
    snprintf(out, size, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(conn);
}

/*
 * Random nests of begin/commit/rollback with view writes in between, checked against a
 * model of what must survive: a row survives when every scope around it committed. Covers
 * the savepoints the adapter sends lazily (scopes that touch nothing, scopes rolled back
 * before or after the server heard of them, names reused by sibling scopes).
 */
#define MAX_LEVELS 12
#define MAX_TEXT 8192

static void append(char *dst, const char *src)
{
    size_t len = strlen(dst), add = strlen(src);
    assert_true(len + add < MAX_TEXT);
    memmove(dst + len, src, add + 1);
}

static void test_scopes_random(void **state)
{
    (void)state;
    char orderid[96];
    uniq(orderid, sizeof orderid, "o-scopes");
    ap_uow_t *uow = new_uow();
    unsigned seed = 12345;
    unsigned tag = 0;
    static char kept[MAX_LEVELS + 1][MAX_TEXT]; /* per open scope: its rows so far */
    static char expected[MAX_TEXT], actual[MAX_TEXT];
    expected[0] = '\0';

    for (int round = 0; round < 25; round++) {
        assert_int_equal(ap_uow_begin(uow), AP_OK);
        kept[1][0] = '\0';
        for (int step = 0; step < 40; step++) {
            unsigned r = (seed = seed * 1103515245u + 12345u) >> 16;
            unsigned depth = uow->depth;
            if (r % 10 < 3 && depth < MAX_LEVELS) {
                assert_int_equal(ap_uow_begin(uow), AP_OK);
                kept[depth + 1][0] = '\0';
            } else if (r % 10 < 5 && depth > 1) {
                assert_int_equal(ap_uow_commit(uow), AP_OK);
                append(kept[depth - 1], kept[depth]);
            } else if (r % 10 < 6 && depth > 1) {
                ap_uow_rollback(uow);
            } else if (r % 10 < 8) {
                char ref[32];
                snprintf(ref, sizeof ref, "t%u", ++tag);
                assert_int_equal(ap_uow_view_add(uow, orderid, "SKU", ref), AP_OK);
                append(kept[depth], ref);
                append(kept[depth], ",");
            }
            /* else: a scope that does nothing this step */
        }
        while (uow->depth > 1) {
            unsigned depth = uow->depth;
            if (tag % 2) {
                assert_int_equal(ap_uow_commit(uow), AP_OK);
                append(kept[depth - 1], kept[depth]);
            } else {
                ap_uow_rollback(uow);
            }
            tag++;
        }
        if (round % 4 == 3) {
            ap_uow_rollback(uow);
        } else {
            assert_int_equal(ap_uow_commit(uow), AP_OK);
            append(expected, kept[1]);
        }
        assert_true(strlen(expected) < MAX_TEXT / 2);
    }
    ap_uow_free(uow);

    size_t len = strlen(expected);
    if (len)
        expected[len - 1] = '\0'; /* the last "," */
    view_refs(orderid, actual, sizeof actual);
    assert_string_equal(actual, expected);
}

/* Deeper nests than the adapter's queue of lazy savepoint statements holds. */
static void test_scopes_deep(void **state)
{
    (void)state;
    char orderid[96], ref[32];
    uniq(orderid, sizeof orderid, "o-deep");
    ap_uow_t *uow = new_uow();

    assert_int_equal(ap_uow_begin(uow), AP_OK);
    for (int i = 0; i < 80; i++) {
        assert_int_equal(ap_uow_begin(uow), AP_OK);
        if (i % 2 == 0) {
            snprintf(ref, sizeof ref, "d%d", i);
            assert_int_equal(ap_uow_view_add(uow, orderid, "SKU", ref), AP_OK);
        }
    }
    ap_uow_rollback(uow); /* level 81, which never touched anything */
    ap_uow_rollback(uow); /* level 80: row d78 */
    while (uow->depth > 1)
        assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_free(uow);
    assert_int_equal(view_rows(orderid), 39);
}

/* Another pg adapter writing through the uow lands inside the uow's current scope. */
static void test_uow_command(void **state)
{
    (void)state;
    char orderid[96];
    uniq(orderid, sizeof orderid, "o-outbox");
    const char *sql = "INSERT INTO allocations_view (orderid, sku, batchref) VALUES ($1, $2, $3)";
    const char *rolled[] = {orderid, "SKU", "rolled-back"};
    const char *kept[] = {orderid, "SKU", "kept"};
    long rows = 0;

    ap_uow_t *uow = new_uow();
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_pg_uow_command(uow, sql, 3, rolled, NULL, NULL, &rows), AP_OK);
    assert_int_equal(rows, 1);
    ap_uow_rollback(uow);
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_pg_uow_command(uow, sql, 3, kept, NULL, NULL, NULL), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    /* Binary parameters (the outbox's bytea key and value). */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    const char bytes[3] = {'a', '\0', 'b'};
    const char *binary[] = {bytes};
    const int lengths[] = {3}, formats[] = {1};
    assert_int_equal(ap_pg_uow_command(uow,
                                       "CREATE TEMP TABLE blobs (b bytea) ON COMMIT DROP;",
                                       0, NULL, NULL, NULL, NULL),
                     AP_OK);
    assert_int_equal(ap_pg_uow_command(uow,
                                       "INSERT INTO blobs SELECT $1::bytea"
                                       " WHERE $1::bytea = '\\x610062'::bytea",
                                       1, binary, lengths, formats, &rows),
                     AP_OK);
    assert_int_equal(rows, 1);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_rollback(uow);

    /* A failing command is an error of the scope it ran in, which rolls back alone. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_pg_uow_command(uow, "INSERT INTO no_such_table VALUES ($1)", 1, kept,
                                       NULL, NULL, NULL),
                     AP_ERR_INTERNAL);
    ap_uow_rollback(uow);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_free(uow);

    char refs[256];
    view_refs(orderid, refs, sizeof refs);
    assert_string_equal(refs, "kept");
}

/* ---------------------------------------------------------------- concurrency */

static void test_concurrent_transactions(void **state)
{
    (void)state;
    char sku[96], ref[96];
    uniq(sku, sizeof sku, "BED");
    uniq(ref, sizeof ref, "b-bed");
    store_product(sku, ref, 100);

    ap_uow_t *first = new_uow(), *second = new_uow();
    ap_product_t *p1 = NULL, *p2 = NULL;
    assert_int_equal(ap_uow_begin(first), AP_OK);
    assert_int_equal(ap_uow_begin(second), AP_OK);
    assert_int_equal(ap_uow_get(first, sku, &p1), AP_OK);
    assert_int_equal(ap_uow_get(second, sku, &p2), AP_OK);
    int64_t version = p1->version_number;
    assert_int_equal(p2->version_number, version);
    allocate(first, p1, "o1", 10, ref);
    allocate(second, p2, "o2", 20, ref);
    assert_int_equal(ap_uow_commit(first), AP_OK);
    assert_int_equal(ap_uow_commit(second), AP_ERR_CONFLICT);
    assert_int_equal(second->depth, 0);

    /* The retry starts from scratch and sees the first one's allocation. */
    assert_int_equal(ap_uow_begin(second), AP_OK);
    assert_int_equal(ap_uow_get(second, sku, &p2), AP_OK);
    assert_int_equal(p2->version_number, version + 1);
    allocate(second, p2, "o2", 20, ref);
    assert_int_equal(ap_uow_commit(second), AP_OK);
    ap_uow_free(first);
    ap_uow_free(second);

    ap_product_t *loaded = fetch(sku);
    assert_non_null(loaded);
    assert_int_equal(loaded->version_number, version + 2);
    assert_int_equal(loaded->batches[0].nlines, 2);
    assert_string_equal(ap_batch_line_orderid(&loaded->batches[0], 0), "o1");
    assert_string_equal(ap_batch_line_orderid(&loaded->batches[0], 1), "o2");
    ap_product_free(loaded);
    assert_int_equal(scalar("SELECT count(*) FROM allocations a JOIN batches b"
                            " ON b.id = a.batch_id WHERE b.sku = $1",
                            sku),
                     2);
}

/*
 * Deferred writes (uow->defer_writes, as the consumer's batches use them): inner scopes commit
 * without a round trip; a stale version found when the queue is finally sent dooms the whole
 * transaction, which reports a conflict, can only be rolled back, and leaves the uow usable.
 */
static void test_deferred_writes_doom_the_transaction(void **state)
{
    (void)state;
    char sku[96], ref[96];
    uniq(sku, sizeof sku, "DESK");
    uniq(ref, sizeof ref, "b-desk");
    store_product(sku, ref, 100);

    ap_uow_t *batch = new_uow(), *other = new_uow();
    ap_product_t *p1 = NULL, *p2 = NULL;
    batch->defer_writes = true;
    assert_int_equal(ap_uow_begin(batch), AP_OK);
    assert_int_equal(ap_uow_begin(batch), AP_OK); /* a command's savepoint */
    assert_int_equal(ap_uow_get(batch, sku, &p1), AP_OK);
    int64_t version = p1->version_number;
    allocate(batch, p1, "o1", 10, ref);
    assert_int_equal(ap_uow_commit(batch), AP_OK); /* queued, not sent */
    ap_uow_forget(batch);

    /* Someone else moves the product on before the batch's writes reach the server. */
    assert_int_equal(ap_uow_begin(other), AP_OK);
    assert_int_equal(ap_uow_get(other, sku, &p2), AP_OK);
    allocate(other, p2, "o2", 20, ref);
    assert_int_equal(ap_uow_commit(other), AP_OK);

    assert_int_equal(ap_uow_commit(batch), AP_ERR_CONFLICT);
    assert_false(batch->doomed); /* the failed commit rolled back, which clears it */
    assert_int_equal(batch->depth, 0);

    /* Nothing of the batch was stored, and the same uow works again. */
    ap_product_t *loaded = fetch(sku);
    assert_int_equal(loaded->version_number, version + 1);
    assert_int_equal(loaded->batches[0].nlines, 1);
    assert_string_equal(ap_batch_line_orderid(&loaded->batches[0], 0), "o2");
    ap_product_free(loaded);
    batch->defer_writes = false;
    assert_int_equal(ap_uow_begin(batch), AP_OK);
    assert_int_equal(ap_uow_get(batch, sku, &p1), AP_OK);
    allocate(batch, p1, "o1", 10, ref);
    assert_int_equal(ap_uow_commit(batch), AP_OK);
    ap_uow_free(batch);
    ap_uow_free(other);
    loaded = fetch(sku);
    assert_int_equal(loaded->version_number, version + 2);
    ap_product_free(loaded);
}


/* The other session of test_version_check_meets_an_update_in_flight: it commits its update
 * once the batch's statement waits for its row lock (or after 10 s without seeing that). */
typedef struct {
    PGconn *conn;
    bool saw_wait;
} in_flight_t;

static void *commit_once_waited_on(void *arg)
{
    in_flight_t *other = arg;
    PGconn *monitor = admin();
    for (long long until = ap_test_now_us() + 10000000; ap_test_now_us() < until;) {
        PGresult *res = PQexecParams(
            monitor,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            "   AND wait_event_type = 'Lock' AND query LIKE 'UPDATE products p%'",
            0, NULL, NULL, NULL, NULL, 0);
        other->saw_wait =
            PQresultStatus(res) == PGRES_TUPLES_OK && atoi(PQgetvalue(res, 0, 0)) > 0;
        PQclear(res);
        if (other->saw_wait)
            break;
        ap_test_pause_ms(10);
    }
    PQclear(PQexec(other->conn, "COMMIT"));
    PQfinish(monitor);
    return NULL;
}

/*
 * The version check meets an update in flight: another session has updated the product and
 * not committed yet when the batch's writes arrive. The batch's statement waits for that
 * row's lock and, once the other commits, must find the row moved on: a conflict, and
 * nothing of the batch stored (ST_PRODUCT_CAS_MANY updates through the row it found).
 */
static void test_version_check_meets_an_update_in_flight(void **state)
{
    (void)state;
    char sku[96], ref[96];
    uniq(sku, sizeof sku, "STOOL");
    uniq(ref, sizeof ref, "b-stool");
    store_product(sku, ref, 100);

    ap_uow_t *batch = new_uow();
    ap_product_t *product = NULL;
    batch->defer_writes = true;
    assert_int_equal(ap_uow_begin(batch), AP_OK);
    assert_int_equal(ap_uow_begin(batch), AP_OK);
    assert_int_equal(ap_uow_get(batch, sku, &product), AP_OK);
    int64_t version = product->version_number;
    allocate(batch, product, "o1", 10, ref);
    assert_int_equal(ap_uow_commit(batch), AP_OK); /* queued, not sent */
    ap_uow_forget(batch);

    in_flight_t other = {admin(), false};
    const char *params[] = {sku};
    PQclear(PQexec(other.conn, "BEGIN"));
    PGresult *res = PQexecParams(other.conn,
                                 "UPDATE products SET version_number = version_number + 1"
                                 " WHERE sku = $1",
                                 1, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    assert_string_equal(PQcmdTuples(res), "1");
    PQclear(res);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, commit_once_waited_on, &other), 0);
    assert_int_equal(ap_uow_commit(batch), AP_ERR_CONFLICT);
    pthread_join(thread, NULL);
    PQfinish(other.conn);
    assert_true(other.saw_wait); /* the batch did meet the update in flight */
    ap_uow_free(batch);

    ap_product_t *loaded = fetch(sku);
    assert_int_equal(loaded->version_number, version + 1); /* the other's */
    assert_int_equal(loaded->batches[0].nlines, 0);
    ap_product_free(loaded);
}

/*
 * A batch's deferred writes are merged per table (product checks into one statement, runs
 * of inserts into one each) and must store exactly what the commands did, in their order:
 * a new product, a product changed by several commands, a deallocation between
 * allocations, and read-model rows.
 */
static void test_deferred_writes_merge_per_table(void **state)
{
    (void)state;
    char sku_a[96], ref_a[96], sku_b[96], ref_b[96], orderid[7][96];
    uniq(sku_a, sizeof sku_a, "MERGED-A");
    uniq(ref_a, sizeof ref_a, "b-merged-a");
    uniq(sku_b, sizeof sku_b, "MERGED-B");
    uniq(ref_b, sizeof ref_b, "b-merged-b");
    for (int i = 1; i <= 6; i++) {
        char base[16];
        snprintf(base, sizeof base, "mo%d", i);
        uniq(orderid[i], sizeof orderid[i], base);
    }
    store_product(sku_a, ref_a, 100);
    ap_product_t *before = fetch(sku_a);
    int64_t version_a = before->version_number;
    ap_product_free(before);

    ap_uow_t *uow = new_uow();
    uow->defer_writes = true;
    assert_int_equal(ap_uow_begin(uow), AP_OK);

    ap_product_t *b = ap_product_new(sku_b); /* a new product */
    assert_non_null(b);
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_product_add_batch(b, ref_b, 50, false, 0), AP_OK);
    assert_int_equal(ap_uow_add(uow, b), AP_OK);
    command_end(uow);
    for (int i = 1; i <= 3; i++) { /* one product, three commands */
        ap_product_t *a = command_get(uow, sku_a);
        allocate(uow, a, orderid[i], 10, ref_a);
        assert_int_equal(ap_uow_view_add(uow, orderid[i], sku_a, ref_a), AP_OK);
        command_end(uow);
    }
    b = command_get(uow, sku_b);
    allocate(uow, b, orderid[4], 5, ref_b);
    assert_int_equal(ap_uow_view_add(uow, orderid[4], sku_b, ref_b), AP_OK);
    command_end(uow);
    ap_product_t *a = command_get(uow, sku_a); /* takes back o3 then o2 */
    change_qty(uow, a, ref_a, 15);
    assert_int_equal(ap_uow_view_remove(uow, orderid[3], sku_a, ref_a), AP_OK);
    assert_int_equal(ap_uow_view_remove(uow, orderid[2], sku_a, ref_a), AP_OK);
    command_end(uow);
    a = command_get(uow, sku_a);
    allocate(uow, a, orderid[5], 5, ref_a);
    assert_int_equal(ap_uow_view_add(uow, orderid[5], sku_a, ref_a), AP_OK);
    command_end(uow);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_free(uow);

    ap_product_t *stored_a = fetch(sku_a), *stored_b = fetch(sku_b);
    assert_non_null(stored_a);
    assert_non_null(stored_b);
    assert_int_equal(stored_a->version_number, version_a + 5);
    assert_int_equal(stored_b->version_number, 2);
    const ap_batch_t *batch_a = ap_product_find_batch(stored_a, ref_a);
    assert_int_equal(batch_a->purchased_qty, 15);
    assert_int_equal(batch_a->nlines, 2);
    assert_string_equal(ap_batch_line_orderid(batch_a, 0), orderid[1]);
    assert_string_equal(ap_batch_line_orderid(batch_a, 1), orderid[5]);
    const ap_batch_t *batch_b = ap_product_find_batch(stored_b, ref_b);
    assert_int_equal(batch_b->nlines, 1);
    assert_string_equal(ap_batch_line_orderid(batch_b, 0), orderid[4]);
    assert_allocated_matches_lines(sku_a);
    assert_allocated_matches_lines(sku_b);
    ap_product_free(stored_a);
    ap_product_free(stored_b);
    const long long expected_views[] = {0, 1, 0, 0, 1, 1};
    for (int i = 1; i <= 5; i++) {
        assert_int_equal(scalar("SELECT count(*) FROM allocations_view WHERE orderid = $1",
                                orderid[i]),
                         expected_views[i]);
    }
}

/*
 * The unit of work's statements run on their generic plans from the first call: a small batch
 * is never planned anew (the server's own choice kept a custom plan for the product update,
 * and planned it again at every call).
 */
static void test_statements_keep_their_generic_plan(void **state)
{
    (void)state;
    char sku[96], ref[96], orderid[128];
    uniq(sku, sizeof sku, "GENERIC");
    uniq(ref, sizeof ref, "b-generic");
    store_product(sku, ref, 1000);

    ap_uow_t *uow = new_uow();
    for (int i = 0; i < 8; i++) { /* batches of one command, as at a low rate */
        uow->defer_writes = true;
        assert_int_equal(ap_uow_begin(uow), AP_OK);
        ap_product_t *product = command_get(uow, sku);
        snprintf(orderid, sizeof orderid, "%s-o%d", sku, i);
        allocate(uow, product, orderid, 1, ref);
        assert_int_equal(ap_uow_view_add(uow, orderid, sku, ref), AP_OK);
        command_end(uow);
        assert_int_equal(ap_uow_commit(uow), AP_OK);
        uow->defer_writes = false;
    }

    PGconn *conn = container_of(uow, pg_uow_t, uow)->conn;
    PGresult *res = PQexec(conn, "SELECT name, generic_plans, custom_plans"
                                 "  FROM pg_prepared_statements"
                                 " WHERE name = 'ap_product_cas_many' OR custom_plans > 0"
                                 " ORDER BY name");
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    int custom = 0, cas_generic = -1;
    for (int row = 0; ok && row < PQntuples(res); row++) {
        const char *name = PQgetvalue(res, row, 0);
        if (atoi(PQgetvalue(res, row, 2)) > 0) {
            print_error("%s: %s custom plan(s)\n", name, PQgetvalue(res, row, 2));
            custom++;
        }
        if (strcmp(name, "ap_product_cas_many") == 0)
            cas_generic = atoi(PQgetvalue(res, row, 1));
    }
    PQclear(res);
    ap_uow_free(uow);
    assert_true(ok);
    assert_int_equal(custom, 0);
    assert_int_equal(cas_generic, 8);
    assert_int_equal(scalar("SELECT allocated_quantity FROM batches WHERE reference = $1", ref),
                     8);
}

/* Two transactions creating the same product: one wins, the other conflicts. */
static void test_concurrent_creation(void **state)
{
    (void)state;
    char sku[96], ref1[96], ref2[96];
    uniq(sku, sizeof sku, "SHELF");
    uniq(ref1, sizeof ref1, "b-shelf1");
    uniq(ref2, sizeof ref2, "b-shelf2");

    ap_uow_t *first = new_uow(), *second = new_uow();
    assert_int_equal(ap_uow_begin(first), AP_OK);
    assert_int_equal(ap_uow_begin(second), AP_OK);
    ap_product_t *p1 = NULL, *p2 = NULL;
    assert_int_equal(ap_uow_get(first, sku, &p1), AP_ERR_NOT_FOUND);
    assert_int_equal(ap_uow_get(second, sku, &p2), AP_ERR_NOT_FOUND);
    p1 = ap_product_new(sku);
    p2 = ap_product_new(sku);
    assert_non_null(p1);
    assert_non_null(p2);
    assert_int_equal(ap_product_add_batch(p1, ref1, 10, false, 0), AP_OK);
    assert_int_equal(ap_product_add_batch(p2, ref2, 20, false, 0), AP_OK);
    assert_int_equal(ap_uow_add(first, p1), AP_OK);
    assert_int_equal(ap_uow_add(second, p2), AP_OK);
    assert_int_equal(ap_uow_commit(first), AP_OK);
    assert_int_equal(ap_uow_commit(second), AP_ERR_CONFLICT);

    /* The retry finds the product and adds its batch to it. */
    assert_int_equal(ap_uow_begin(second), AP_OK);
    assert_int_equal(ap_uow_get(second, sku, &p2), AP_OK);
    assert_int_equal(ap_product_add_batch(p2, ref2, 20, false, 0), AP_OK);
    assert_int_equal(ap_uow_commit(second), AP_OK);
    ap_uow_free(first);
    ap_uow_free(second);

    ap_product_t *loaded = fetch(sku);
    assert_non_null(loaded);
    assert_int_equal(loaded->version_number, 2);
    assert_int_equal(loaded->nbatches, 2);
    assert_string_equal(loaded->batches[0].ref, ref1);
    assert_string_equal(loaded->batches[1].ref, ref2);
    ap_product_free(loaded);
}

/* ---------------------------------------------------------------- read model */

static void test_views(void **state)
{
    (void)state;
    char orderid[96], missing[96], sku1[96], sku2[96], ref1[96], ref2[96];
    uniq(orderid, sizeof orderid, "o-view");
    uniq(missing, sizeof missing, "o-none");
    uniq(sku1, sizeof sku1, "MUG");
    uniq(sku2, sizeof sku2, "CUP");
    uniq(ref1, sizeof ref1, "b-mug");
    uniq(ref2, sizeof ref2, "b-cup");

    ap_uow_t *uow = new_uow();
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_view_add(uow, orderid, sku1, ref1), AP_OK);
    assert_int_equal(ap_uow_view_add(uow, orderid, sku2, ref2), AP_OK);
    assert_int_equal(ap_uow_view_add(uow, orderid, sku1, ref1), AP_OK);
    /* Removes one row, the newest of the two identical ones; a missing row is no error. */
    assert_int_equal(ap_uow_view_remove(uow, orderid, sku1, ref1), AP_OK);
    assert_int_equal(ap_uow_view_remove(uow, orderid, sku2, ref1), AP_OK);
    assert_int_equal(ap_uow_view_remove(uow, missing, sku1, ref1), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);

    ap_views_t *views = NULL;
    ap_allocation_row_t *rows = NULL;
    size_t nrows = 0;
    assert_int_equal(ap_pg_views_new(db_url(), &views), AP_OK);
    assert_int_equal(ap_views_allocations(views, orderid, &rows, &nrows), AP_OK);
    assert_int_equal(nrows, 2);
    assert_string_equal(rows[0].sku, sku1);
    assert_string_equal(rows[0].batchref, ref1);
    assert_string_equal(rows[1].sku, sku2);
    assert_string_equal(rows[1].batchref, ref2);
    free(rows);
    rows = NULL;
    assert_int_equal(ap_views_allocations(views, missing, &rows, &nrows), AP_ERR_NOT_FOUND);
    assert_null(rows);

    /* Uncommitted rows are invisible to the read side. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_view_add(uow, missing, sku1, ref1), AP_OK);
    assert_int_equal(ap_views_allocations(views, missing, &rows, &nrows), AP_ERR_NOT_FOUND);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(ap_views_allocations(views, missing, &rows, &nrows), AP_OK);
    assert_int_equal(nrows, 1);
    free(rows);

    ap_views_free(views);
    ap_uow_free(uow);
}

/* ---------------------------------------------------------------- offsets */

static void test_offsets(void **state)
{
    (void)state;
    char group[96];
    const char *topic = "allocation.commands";
    uniq(group, sizeof group, "group");
    int64_t epoch = 0, next = 0, epoch2 = 0;

    ap_uow_t *uow = new_uow(), *other = new_uow();
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_claim_partition(uow, group, topic, 3, &epoch, &next), AP_OK);
    assert_int_equal(epoch, 1);
    assert_int_equal(next, -1);
    assert_int_equal(ap_uow_advance_offset(uow, group, topic, 3, epoch, -1, 5), AP_OK);
    /* The offset moved: expecting the old one is fenced. */
    assert_int_equal(ap_uow_advance_offset(uow, group, topic, 3, epoch, -1, 6), AP_ERR_FENCED);
    assert_int_equal(ap_uow_advance_offset(uow, group, topic, 3, epoch, 5, 9), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);

    /* Another partition of the same topic is independent. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_claim_partition(uow, group, topic, 4, &epoch2, &next), AP_OK);
    assert_int_equal(epoch2, 1);
    assert_int_equal(next, -1);
    assert_int_equal(ap_uow_commit(uow), AP_OK);

    /* A new owner claims partition 3: it starts where the old one stopped, and the old one
     * can no longer move the offset. */
    assert_int_equal(ap_uow_begin(other), AP_OK);
    assert_int_equal(ap_uow_claim_partition(other, group, topic, 3, &epoch2, &next), AP_OK);
    assert_int_equal(epoch2, 2);
    assert_int_equal(next, 9);
    assert_int_equal(ap_uow_commit(other), AP_OK);

    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_advance_offset(uow, group, topic, 3, epoch, 9, 10), AP_ERR_FENCED);
    assert_int_equal(ap_uow_commit(uow), AP_OK);

    assert_int_equal(ap_uow_begin(other), AP_OK);
    assert_int_equal(ap_uow_advance_offset(other, group, topic, 3, epoch2, 9, 10), AP_OK);
    assert_int_equal(ap_uow_commit(other), AP_OK);

    /* With the commit's deferred writes, a fenced advance fails the commit, and the
     * transaction's other writes go with it. */
    char orderid[96];
    uniq(orderid, sizeof orderid, "o-fenced");
    const char *view[] = {orderid, "SKU", "fenced"};
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    uow->defer_writes = true;
    assert_int_equal(ap_pg_uow_command(uow, "INSERT INTO allocations_view (orderid, sku, "
                                            "batchref) VALUES ($1, $2, $3)",
                                       3, view, NULL, NULL, NULL),
                     AP_OK);
    assert_int_equal(ap_uow_advance_offset(uow, group, topic, 3, epoch, 10, 11), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_ERR_FENCED);
    uow->defer_writes = false;
    assert_int_equal(uow->depth, 0);
    char refs[256];
    view_refs(orderid, refs, sizeof refs);
    assert_string_equal(refs, "");
    /* The owner's deferred advance is stored with its commit. */
    assert_int_equal(ap_uow_begin(other), AP_OK);
    other->defer_writes = true;
    assert_int_equal(ap_uow_advance_offset(other, group, topic, 3, epoch2, 10, 11), AP_OK);
    assert_int_equal(ap_uow_commit(other), AP_OK);
    other->defer_writes = false;

    /* An advance that is rolled back is not stored. */
    assert_int_equal(ap_uow_begin(other), AP_OK);
    assert_int_equal(ap_uow_advance_offset(other, group, topic, 3, epoch2, 11, 12), AP_OK);
    ap_uow_rollback(other);

    assert_int_equal(scalar("SELECT next_offset FROM consumer_offsets WHERE group_id = $1"
                            " AND partition = 3",
                            group),
                     11);
    ap_uow_free(uow);
    ap_uow_free(other);
}

/* ---------------------------------------------------------------- connection loss */

/* The value of a connection option in effect on `conn`, or "" when it has none. */
static const char *option_in_effect(PQconninfoOption *options, const char *keyword)
{
    for (PQconninfoOption *o = options; o && o->keyword; o++) {
        if (strcmp(o->keyword, keyword) == 0)
            return o->val ? o->val : "";
    }
    return "";
}

/* Sessions get keepalives and a name by default; the connection string still decides.
 * Every session has the JIT compiler off, whatever the server's default. */
static void test_connection_defaults_yield_to_the_url(void **state)
{
    (void)state;
    PGconn *conn = ap_pg_connect(db_url());
    assert_non_null(conn);
    PGresult *res = PQexec(conn, "SHOW jit");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(res, 0, 0), "off");
    PQclear(res);
    PQconninfoOption *options = PQconninfo(conn);
    assert_string_equal(option_in_effect(options, "keepalives"), "1");
    assert_string_equal(option_in_effect(options, "keepalives_idle"), "30");
    assert_string_equal(option_in_effect(options, "tcp_user_timeout"), "60000");
    PQconninfoFree(options);
    if (!strstr(db_url(), "application_name"))
        assert_string_equal(PQparameterStatus(conn, "application_name"), "allocation-processor");
    PQfinish(conn);

    char url[1024];
    snprintf(url, sizeof url, "%s%sapplication_name=mine&keepalives_idle=7", db_url(),
             strchr(db_url(), '?') ? "&" : "?");
    assert_non_null(conn = ap_pg_connect(url));
    options = PQconninfo(conn);
    assert_string_equal(option_in_effect(options, "keepalives_idle"), "7");
    PQconninfoFree(options);
    assert_string_equal(PQparameterStatus(conn, "application_name"), "mine");
    PQfinish(conn);
}

/* The server's text for `array` sent in binary as parameter $1 of `sql`. */
static void server_reads(const char *sql, const char *array, int len, const char *want)
{
    PGconn *conn = admin();
    const int format = 1;
    PGresult *res = PQexecParams(conn, sql, 1, NULL, &array, &len, &format, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(conn));
    assert_string_equal(PQgetvalue(res, 0, 0), want);
    PQclear(res);
    PQfinish(conn);
}

/* The many-row writes send their arrays in binary: NULLs, empty and quoted text, any bytes. */
static void test_binary_arrays(void **state)
{
    (void)state;
    const char *text[] = {"a", NULL, "", "q\"u\\ote,{x}", "sk\xc3\xa9"};
    int len;
    char *array = ap_pg_binary_array(AP_PG_TEXT_OID, text, NULL, 5, &len);
    assert_non_null(array);
    server_reads("SELECT $1::text[]::text", array, len,
                 "{a,NULL,\"\",\"q\\\"u\\\\ote,{x}\",sk\xc3\xa9}");
    server_reads("SELECT array_length($1::text[], 1)::text", array, len, "5");
    free(array);

    const char *bytes[] = {"\0\377", NULL, ""};
    const int lengths[] = {2, 0, 0};
    assert_non_null(array = ap_pg_binary_array(AP_PG_BYTEA_OID, bytes, lengths, 3, &len));
    server_reads("SELECT $1::bytea[]::text", array, len, "{\"\\\\x00ff\",NULL,\"\\\\x\"}");
    free(array);

    assert_non_null(array = ap_pg_binary_array(AP_PG_TEXT_OID, NULL, NULL, 0, &len));
    server_reads("SELECT $1::text[]::text", array, len, "{}");
    free(array);
}

/* Terminates the sessions that set application_name `name`, and waits until they are gone. */
static void kill_sessions(const char *name)
{
    PGconn *conn = admin();
    const char *params[] = {name};
    PGresult *res = PQexecParams(conn,
                                 "SELECT count(pg_terminate_backend(pid, 5000))"
                                 "  FROM pg_stat_activity WHERE application_name = $1"
                                 "   AND pid <> pg_backend_pid()",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("terminate: %s", PQerrorMessage(conn));
    assert_true(atoll(PQgetvalue(res, 0, 0)) >= 1);
    PQclear(res);
    PQfinish(conn);

    time_t deadline = time(NULL) + 10;
    while (scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name)) {
        if (time(NULL) > deadline)
            fail_msg("sessions %s still alive after 10 s", name);
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

static void test_connection_loss(void **state)
{
    (void)state;
    char app[96], sku[96], ref[96];
    uniq_ident(app, sizeof app, "ap_test_pg");
    uniq(sku, sizeof sku, "LOST");
    uniq(ref, sizeof ref, "b-lost");
    store_product(sku, ref, 10);
    char *conninfo = conninfo_with("application_name", app);
    ap_uow_t *uow = NULL;
    ap_product_t *product = NULL;
    assert_int_equal(ap_pg_uow_new(conninfo, &uow), AP_OK);

    /* Lost before the transaction's first statement: BEGIN rides with that statement, so
     * nothing of the transaction was lost, and it goes on on a new connection. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    kill_sessions(app);
    assert_int_equal(ap_uow_get(uow, sku, &product), AP_OK);
    ap_uow_rollback(uow);

    /* Lost in the middle of a transaction: the caller hears about it... */
    char other[96];
    uniq(other, sizeof other, "LOST-OTHER");
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, sku, &product), AP_OK);
    kill_sessions(app);
    assert_int_equal(ap_uow_get(uow, other, &product), AP_ERR_UNAVAILABLE);
    ap_uow_rollback(uow);

    /* ...and the next transaction runs on a new connection. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, sku, &product), AP_OK);
    allocate(uow, product, "o1", 1, ref);
    assert_int_equal(ap_uow_commit(uow), AP_OK);

    /* Lost before commit: the commit fails, nothing is stored. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, sku, &product), AP_OK);
    allocate(uow, product, "o2", 1, ref);
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    kill_sessions(app);
    assert_int_equal(ap_uow_commit(uow), AP_ERR_UNAVAILABLE);
    assert_int_equal(uow->depth, 1);
    assert_int_equal(ap_uow_view_add(uow, "o2", sku, ref), AP_ERR_UNAVAILABLE);
    ap_uow_rollback(uow);
    assert_int_equal(uow->depth, 0);
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, sku, &product), AP_OK);
    assert_int_equal(ap_batch_allocated_qty(&product->batches[0]), 1);
    load_whole(uow, product);
    assert_int_equal(product->batches[0].nlines, 1);
    assert_string_equal(ap_batch_line_orderid(&product->batches[0], 0), "o1");
    ap_uow_rollback(uow);

    /* Lost between transactions: begin notices and reconnects by itself. */
    kill_sessions(app);
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, sku, &product), AP_OK);
    assert_int_equal(ap_batch_allocated_qty(&product->batches[0]), 1);
    ap_uow_rollback(uow);
    ap_uow_free(uow);

    /* The read side reconnects too. */
    ap_views_t *views = NULL;
    ap_allocation_row_t *rows = NULL;
    size_t nrows = 0;
    assert_int_equal(ap_pg_views_new(conninfo, &views), AP_OK);
    assert_int_equal(ap_views_allocations(views, sku, &rows, &nrows), AP_ERR_NOT_FOUND);
    kill_sessions(app);
    assert_int_equal(ap_views_allocations(views, sku, &rows, &nrows), AP_ERR_NOT_FOUND);
    ap_views_free(views);
    free(conninfo);
}

/* ---------------------------------------------------------------- main */

static int migrate_once(void **state)
{
    (void)state;
    /* Tests share the database named by DATABASE_URL; bring it up to date first. */
    return ap_pg_migrate(db_url(), NULL) == AP_OK ? 0 : -1;
}

int main(void)
{
    const char *url = getenv("DATABASE_URL");
    if (!url || !*url) {
        fprintf(stderr, "test_pg: DATABASE_URL is not set; these tests need a PostgreSQL "
                        "database (eval \"$(deploy/local/services.sh env)\" and use "
                        "DATABASE_URL=$TEST_DATABASE_URL)\n");
        return 1;
    }
    ap_log_setup(getenv("LOG_LEVEL") && strcmp(getenv("LOG_LEVEL"), "debug") == 0
                     ? AP_LOG_DEBUG
                     : AP_LOG_WARN,
                 false);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_twice),
        cmocka_unit_test(test_migrate_concurrently),
        cmocka_unit_test(test_migrate_bad_server),
        cmocka_unit_test(test_repository_round_trip),
        cmocka_unit_test(test_repository_updates),
        cmocka_unit_test(test_repository_many_changes),
        cmocka_unit_test(test_long_history_stays_in_storage),
        cmocka_unit_test(test_load_by_batchref),
        cmocka_unit_test(test_rollback_by_default),
        cmocka_unit_test(test_rollback_on_error),
        cmocka_unit_test(test_savepoints),
        cmocka_unit_test(test_outer_rollback_undoes_inner_commits),
        cmocka_unit_test(test_scopes_random),
        cmocka_unit_test(test_scopes_deep),
        cmocka_unit_test(test_uow_command),
        cmocka_unit_test(test_concurrent_transactions),
        cmocka_unit_test(test_concurrent_creation),
        cmocka_unit_test(test_deferred_writes_doom_the_transaction),
        cmocka_unit_test(test_version_check_meets_an_update_in_flight),
        cmocka_unit_test(test_deferred_writes_merge_per_table),
        cmocka_unit_test(test_statements_keep_their_generic_plan),
        cmocka_unit_test(test_views),
        cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_connection_defaults_yield_to_the_url),
        cmocka_unit_test(test_binary_arrays),
        cmocka_unit_test(test_connection_loss),
    };
    return cmocka_run_group_tests(tests, migrate_once, NULL);
}
