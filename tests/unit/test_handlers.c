/*
 * test_handlers.c - every handler through the message bus, as the consumer drives it.
 *
 * Each test bootstraps its own app around the in-memory fakes (tests/fakes/) through the
 * same ap_bootstrap as production, sends commands with ap_bus_execute and asserts outcomes:
 * the stored products, the published events, the notifications and the allocations view.
 * The book's test_handlers.py, ported, plus the rules docs/domain.md adds (batch_exists across
 * skus, last-in-first-out reallocation, FIFO event order, retries on conflict, rejections
 * that leave no trace).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "ap/bootstrap.h"
#include "ap/bus.h"
#include "ap/error.h"
#include "ap/messages.h"
#include "ap/model.h"
#include "ap/ports.h"
#include "fakes.h"

#define TODAY 20000
#define TOMORROW 20001
#define WHY_SIZE 512

/* ---------------------------------------------------------------- fixture */

static ap_app_t *new_app(const char *notify_to)
{
    ap_app_t *app = calloc(1, sizeof *app);
    assert_non_null(app);
    ap_err_t err = ap_bootstrap(app, ap_fake_uow_new(), ap_fake_publisher_new(),
                                ap_fake_notifier_new(), ap_fake_clock_new(), notify_to);
    if (err != AP_OK) {
        ap_app_release(app);
        free(app);
        fail_msg("ap_bootstrap: %s", ap_strerror(err));
    }
    return app;
}

static void free_app(ap_app_t *app)
{
    ap_app_release(app);
    free(app);
}

static int setup(void **state)
{
    *state = new_app(NULL);
    return 0;
}

static int teardown(void **state)
{
    free_app(*state);
    return 0;
}

/*
 * Adapters that fail on demand, passed in through the same ap_bootstrap door: the fakes
 * cannot fail a single event handler, and the bus's isolation rules need exactly that.
 * What gets through is recorded by an ordinary fake behind them.
 */
typedef struct failing_notifier {
    ap_notifier_t notifier;
    unsigned attempts;
} failing_notifier_t;

static ap_err_t failing_send(ap_notifier_t *notifier, const char *to, const char *subject,
                             const char *body, const char *event_id)
{
    (void)to, (void)subject, (void)body, (void)event_id;
    container_of(notifier, failing_notifier_t, notifier)->attempts++;
    return AP_ERR_IO;
}

static void failing_notifier_free(ap_notifier_t *notifier)
{
    free(container_of(notifier, failing_notifier_t, notifier));
}

static const struct ap_notifier_ops failing_notifier_ops = {failing_send, failing_notifier_free};

static ap_app_t *new_app_with(ap_publisher_t *publisher, ap_notifier_t *notifier)
{
    ap_app_t *app = calloc(1, sizeof *app);
    assert_non_null(app);
    ap_err_t err = ap_bootstrap(app, ap_fake_uow_new(), publisher,
                                notifier ? notifier : ap_fake_notifier_new(), ap_fake_clock_new(),
                                NULL);
    if (err != AP_OK) {
        free(app);
        fail_msg("ap_bootstrap: %s", ap_strerror(err));
    }
    return app;
}

#define UOW(app) ((app)->deps.uow)
#define PUB(app) ((app)->deps.publisher)
#define NOTIFIER(app) ((app)->deps.notifier)

/* ---------------------------------------------------------------- commands */

static ap_msg_t create_shipment(const char *ref, const char *sku, int64_t qty, int32_t eta)
{
    ap_msg_t msg;
    assert_int_equal(ap_msg_create_batch(&msg, ref, sku, qty, true, eta), AP_OK);
    return msg;
}

/* Runs a command that must succeed. */
static void ok(ap_app_t *app, ap_msg_t cmd)
{
    char why[WHY_SIZE] = "";
    ap_err_t err = ap_bus_execute(&app->bus, &cmd, why, sizeof why);
    if (err != AP_OK)
        fail_msg("%s failed: %s (%s)", ap_msg_type_name(cmd.type), ap_strerror(err), why);
}

/* Runs a command that must be rejected with `expected`; returns its one-line reason. */
static const char *rejected(ap_app_t *app, ap_msg_t cmd, ap_err_t expected)
{
    static char why[WHY_SIZE];
    memset(why, 0, sizeof why);
    ap_err_t err = ap_bus_execute(&app->bus, &cmd, why, sizeof why);
    if (err != expected)
        fail_msg("%s: expected %s, got %s (%s)", ap_msg_type_name(cmd.type),
                 ap_strerror(expected), ap_strerror(err), why);
    assert_true(strlen(why) > 0);
    assert_null(strchr(why, '\n'));
    return why;
}

/* ---------------------------------------------------------------- what happened */

static const ap_product_t *stored(ap_app_t *app, const char *sku)
{
    const ap_product_t *product = ap_fake_uow_stored(UOW(app), sku);
    if (!product)
        fail_msg("no stored product %s", sku);
    return product;
}

static const ap_batch_t *stored_batch(ap_app_t *app, const char *sku, const char *ref)
{
    const ap_batch_t *b = ap_product_find_batch(stored(app, sku), ref);
    if (!b)
        fail_msg("no stored batch %s in %s", ref, sku);
    return b;
}

static int64_t stored_available(ap_app_t *app, const char *sku, const char *ref)
{
    return ap_batch_available_qty(stored_batch(app, sku, ref));
}

static int64_t stored_version(ap_app_t *app, const char *sku)
{
    return stored(app, sku)->version_number;
}

static void assert_stored_lines(ap_app_t *app, const char *sku, const char *ref, size_t n,
                                const char *const *orderids)
{
    const ap_batch_t *b = stored_batch(app, sku, ref);
    if (b->nlines != n)
        fail_msg("batch %s holds %zu lines, expected %zu", ref, b->nlines, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(ap_batch_line_orderid(b, i), orderids[i]);
}

static size_t npublished(ap_app_t *app)
{
    return ap_fake_publisher_count(PUB(app));
}

static const ap_msg_t *published(ap_app_t *app, size_t i)
{
    if (i >= npublished(app))
        fail_msg("published event %zu wanted, %zu published", i, npublished(app));
    return ap_fake_publisher_event(PUB(app), i);
}

static void assert_line_event(const ap_msg_t *evt, ap_msg_type_t type, const char *orderid,
                              const char *sku, int64_t qty, const char *batchref)
{
    if (evt->type != type)
        fail_msg("expected %s, got %s", ap_msg_type_name(type), ap_msg_type_name(evt->type));
    assert_string_equal(evt->orderid, orderid);
    assert_string_equal(evt->sku, sku);
    assert_int_equal(evt->qty, qty);
    assert_string_equal(evt->batchref, batchref);
}

static void assert_event_type(const ap_msg_t *evt, ap_msg_type_t type)
{
    if (evt->type != type)
        fail_msg("expected %s, got %s", ap_msg_type_name(type), ap_msg_type_name(evt->type));
}

/* Rows of the allocations view for one order, through the read side (a plain query). */
static void assert_view(ap_app_t *app, const char *orderid, size_t n,
                        const ap_allocation_row_t *expected)
{
    ap_views_t *views = ap_fake_views_new(UOW(app));
    assert_non_null(views);
    ap_allocation_row_t *rows = NULL;
    size_t nrows = 0;
    ap_err_t err = ap_views_allocations(views, orderid, &rows, &nrows);
    ap_views_free(views);
    if (n == 0) {
        free(rows);
        if (err != AP_ERR_NOT_FOUND)
            fail_msg("order %s: expected not found, got %s with %zu rows", orderid,
                     ap_strerror(err), nrows);
        return;
    }
    if (err != AP_OK)
        fail_msg("order %s: %s", orderid, ap_strerror(err));
    if (nrows != n) {
        free(rows);
        fail_msg("order %s: %zu rows, expected %zu", orderid, nrows, n);
    }
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(rows[i].sku, expected[i].sku);
        assert_string_equal(rows[i].batchref, expected[i].batchref);
    }
    free(rows);
}

/* How many rows of the fake's view belong to `orderid` (and, if not NULL, sit in `batchref`). */
static size_t view_rows(ap_app_t *app, const char *orderid, const char *batchref)
{
    size_t count = 0;
    for (size_t i = 0; i < ap_fake_uow_view_count(UOW(app)); i++) {
        const char *row_orderid = NULL;
        const ap_allocation_row_t *row = ap_fake_uow_view_row(UOW(app), i, &row_orderid);
        assert_non_null(row);
        assert_non_null(row_orderid);
        if (strcmp(row_orderid, orderid) == 0 &&
            (!batchref || strcmp(row->batchref, batchref) == 0))
            count++;
    }
    return count;
}

/* Everything a command could leave behind, to prove a rejected one left nothing. */
typedef struct trace {
    size_t published, notified, view_rows, commits;
} trace_t;

static trace_t trace(ap_app_t *app)
{
    return (trace_t){npublished(app), ap_fake_notifier_count(NOTIFIER(app)),
                     ap_fake_uow_view_count(UOW(app)), ap_fake_uow_commits(UOW(app))};
}

static void assert_same_trace(ap_app_t *app, trace_t before)
{
    trace_t now = trace(app);
    assert_int_equal(now.published, before.published);
    assert_int_equal(now.notified, before.notified);
    assert_int_equal(now.view_rows, before.view_rows);
    assert_int_equal(now.commits, before.commits);
}

/* A stored product equal in every field storage keeps. */
static void assert_same_product(const ap_product_t *a, const ap_product_t *b)
{
    assert_string_equal(a->sku, b->sku);
    assert_int_equal(a->version_number, b->version_number);
    assert_int_equal(a->nbatches, b->nbatches);
    for (size_t i = 0; i < a->nbatches; i++) {
        const ap_batch_t *x = &a->batches[i], *y = &b->batches[i];
        assert_string_equal(x->ref, y->ref);
        assert_string_equal(x->sku, y->sku);
        assert_int_equal(x->purchased_qty, y->purchased_qty);
        assert_int_equal(x->has_eta, y->has_eta);
        if (x->has_eta)
            assert_int_equal(x->eta, y->eta);
        assert_int_equal(x->nlines, y->nlines);
        for (size_t j = 0; j < x->nlines; j++) {
            assert_string_equal(ap_batch_line_orderid(x, j), ap_batch_line_orderid(y, j));
            assert_int_equal(x->lines[j].qty, y->lines[j].qty);
        }
    }
}

static ap_product_t *snapshot(ap_app_t *app, const char *sku)
{
    ap_product_t *copy = ap_product_clone(stored(app, sku));
    assert_non_null(copy);
    return copy;
}

static void assert_unchanged(ap_app_t *app, ap_product_t *before)
{
    assert_same_product(stored(app, before->sku), before);
    ap_product_free(before);
}

/* ---------------------------------------------------------------- add_batch */

static void test_add_batch_for_new_product(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("b1", "CRUNCHY-ARMCHAIR", 100));

    const ap_product_t *product = stored(app, "CRUNCHY-ARMCHAIR");
    assert_int_equal(product->nbatches, 1);
    assert_string_equal(product->batches[0].ref, "b1");
    assert_string_equal(product->batches[0].sku, "CRUNCHY-ARMCHAIR");
    assert_int_equal(product->batches[0].purchased_qty, 100);
    assert_false(product->batches[0].has_eta);
    assert_int_equal(product->version_number, 1);
    assert_int_equal(ap_fake_uow_commits(UOW(app)), 1);

    assert_int_equal(npublished(app), 1);
    const ap_msg_t *evt = published(app, 0);
    assert_event_type(evt, AP_EVT_BATCH_CREATED);
    assert_string_equal(evt->ref, "b1");
    assert_string_equal(evt->sku, "CRUNCHY-ARMCHAIR");
    assert_int_equal(evt->qty, 100);
    assert_false(evt->has_eta);
}

static void test_add_batch_for_existing_product(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("b1", "GARISH-RUG", 100));
    ok(app, create_shipment("b2", "GARISH-RUG", 99, TOMORROW));

    const ap_product_t *product = stored(app, "GARISH-RUG");
    assert_int_equal(product->nbatches, 2);
    assert_string_equal(product->batches[0].ref, "b1");
    assert_string_equal(product->batches[1].ref, "b2");
    assert_int_equal(product->batches[1].purchased_qty, 99);
    assert_true(product->batches[1].has_eta);
    assert_int_equal(product->batches[1].eta, TOMORROW);
    assert_int_equal(product->version_number, 2);

    assert_int_equal(npublished(app), 2);
    const ap_msg_t *evt = published(app, 1);
    assert_event_type(evt, AP_EVT_BATCH_CREATED);
    assert_string_equal(evt->ref, "b2");
    assert_string_equal(evt->sku, "GARISH-RUG");
    assert_int_equal(evt->qty, 99);
    assert_true(evt->has_eta);
    assert_int_equal(evt->eta, TOMORROW);
}

static void test_add_batch_identical_repeat_is_accepted_without_event(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_shipment("b1", "QUIET-CLOCK", 10, TOMORROW));
    ok(app, allocate("o1", "QUIET-CLOCK", 3));
    ap_product_t *before = snapshot(app, "QUIET-CLOCK");
    size_t events = npublished(app);

    ok(app, create_shipment("b1", "QUIET-CLOCK", 10, TOMORROW));
    assert_unchanged(app, before);
    assert_int_equal(npublished(app), events);
}

static void test_add_batch_same_ref_different_fields_is_batch_exists(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_shipment("b1", "QUIET-CLOCK", 10, TOMORROW));
    ap_product_t *before = snapshot(app, "QUIET-CLOCK");
    trace_t t = trace(app);

    rejected(app, create_shipment("b1", "QUIET-CLOCK", 11, TOMORROW), AP_ERR_BATCH_EXISTS);
    rejected(app, create_shipment("b1", "QUIET-CLOCK", 10, TODAY), AP_ERR_BATCH_EXISTS);
    rejected(app, create_batch("b1", "QUIET-CLOCK", 10), AP_ERR_BATCH_EXISTS);
    assert_unchanged(app, before);
    assert_same_trace(app, t);
}

static void test_add_batch_existing_ref_in_another_sku_is_batch_exists(void **state)
{
    ap_app_t *app = *state;
    /* Batch refs are unique across the whole system, not per product. */
    ok(app, create_batch("shared-ref", "FIRST-SKU", 10));
    ap_product_t *before = snapshot(app, "FIRST-SKU");
    trace_t t = trace(app);

    rejected(app, create_batch("shared-ref", "SECOND-SKU", 20), AP_ERR_BATCH_EXISTS);
    /* Same qty and eta, but the sku differs: still a different batch. */
    rejected(app, create_batch("shared-ref", "SECOND-SKU", 10), AP_ERR_BATCH_EXISTS);

    assert_null(ap_fake_uow_stored(UOW(app), "SECOND-SKU"));
    assert_unchanged(app, before);
    assert_same_trace(app, t);
}

/* ---------------------------------------------------------------- allocate */

static void test_allocate_allocates(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("batch1", "COMPLICATED-LAMP", 100));
    ok(app, allocate("o1", "COMPLICATED-LAMP", 10));

    assert_int_equal(stored(app, "COMPLICATED-LAMP")->nbatches, 1);
    assert_int_equal(stored_available(app, "COMPLICATED-LAMP", "batch1"), 90);
    assert_stored_lines(app, "COMPLICATED-LAMP", "batch1", 1, (const char *const[]){"o1"});
    assert_int_equal(stored_version(app, "COMPLICATED-LAMP"), 2);

    assert_int_equal(npublished(app), 2);
    assert_line_event(published(app, 1), AP_EVT_ALLOCATED, "o1", "COMPLICATED-LAMP", 10,
                      "batch1");
}

static void test_allocate_records_allocation_in_view(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("batch1", "COMPLICATED-LAMP", 100));
    ok(app, allocate("o1", "COMPLICATED-LAMP", 10));

    assert_int_equal(ap_fake_uow_view_count(UOW(app)), 1);
    const char *orderid = NULL;
    const ap_allocation_row_t *row = ap_fake_uow_view_row(UOW(app), 0, &orderid);
    assert_string_equal(orderid, "o1");
    assert_string_equal(row->sku, "COMPLICATED-LAMP");
    assert_string_equal(row->batchref, "batch1");
    assert_view(app, "o1", 1, (const ap_allocation_row_t[]){{"COMPLICATED-LAMP", "batch1"}});
}

static void test_allocate_prefers_warehouse_stock(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_shipment("shipment", "RETRO-CLOCK", 100, TOMORROW));
    ok(app, create_batch("in-stock", "RETRO-CLOCK", 100));
    ok(app, create_batch("elsewhere", "OTHER-CLOCK", 100));
    ok(app, allocate("o1", "RETRO-CLOCK", 10));

    assert_int_equal(stored_available(app, "RETRO-CLOCK", "in-stock"), 90);
    assert_int_equal(stored_available(app, "RETRO-CLOCK", "shipment"), 100);
    assert_int_equal(stored_available(app, "OTHER-CLOCK", "elsewhere"), 100);
    assert_view(app, "o1", 1, (const ap_allocation_row_t[]){{"RETRO-CLOCK", "in-stock"}});
}

static void test_allocate_errors_for_invalid_sku(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("b1", "AREALSKU", 100));
    ap_product_t *before = snapshot(app, "AREALSKU");
    trace_t t = trace(app);

    const char *why = rejected(app, allocate("o1", "NONEXISTENTSKU", 10), AP_ERR_INVALID_SKU);
    assert_string_equal(why, "Invalid sku NONEXISTENTSKU");
    assert_string_equal(ap_err_reason(AP_ERR_INVALID_SKU), "invalid_sku");

    assert_null(ap_fake_uow_stored(UOW(app), "NONEXISTENTSKU"));
    assert_unchanged(app, before);
    assert_same_trace(app, t);
    assert_view(app, "o1", 0, NULL);
}

static void test_allocate_errors_for_invalid_sku_on_empty_store(void **state)
{
    ap_app_t *app = *state;
    trace_t t = trace(app);
    const char *why = rejected(app, allocate("o1", "NOTHING-YET", 1), AP_ERR_INVALID_SKU);
    assert_string_equal(why, "Invalid sku NOTHING-YET");
    assert_null(ap_fake_uow_stored(UOW(app), "NOTHING-YET"));
    assert_same_trace(app, t);
}

static void test_allocate_commits(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("b1", "OMINOUS-MIRROR", 100));
    size_t commits = ap_fake_uow_commits(UOW(app));
    assert_true(commits >= 1);
    ok(app, allocate("o1", "OMINOUS-MIRROR", 10));
    assert_int_equal(ap_fake_uow_commits(UOW(app)), commits + 1);
    /* Committed means stored. */
    assert_stored_lines(app, "OMINOUS-MIRROR", "b1", 1, (const char *const[]){"o1"});
}

static void test_allocate_same_line_twice_is_idempotent(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("b1", "TWICE-TABLE", 100));
    ok(app, allocate("o1", "TWICE-TABLE", 10));
    int64_t version = stored_version(app, "TWICE-TABLE");
    size_t events = npublished(app);

    ok(app, allocate("o1", "TWICE-TABLE", 10));
    assert_int_equal(stored_available(app, "TWICE-TABLE", "b1"), 90);
    assert_int_equal(stored_version(app, "TWICE-TABLE"), version);
    assert_int_equal(npublished(app), events);
    assert_int_equal(view_rows(app, "o1", NULL), 1);
}

static void test_allocate_equal_quantity_boundary(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("b1", "EXACT-STOOL", 10));
    ok(app, allocate("o1", "EXACT-STOOL", 10));
    assert_int_equal(stored_available(app, "EXACT-STOOL", "b1"), 0);
    assert_line_event(published(app, npublished(app) - 1), AP_EVT_ALLOCATED, "o1", "EXACT-STOOL",
                      10, "b1");
    assert_int_equal(ap_fake_notifier_count(NOTIFIER(app)), 0);

    ok(app, allocate("o2", "EXACT-STOOL", 1));
    assert_event_type(published(app, npublished(app) - 1), AP_EVT_OUT_OF_STOCK);
    assert_int_equal(ap_fake_notifier_count(NOTIFIER(app)), 1);
    assert_stored_lines(app, "EXACT-STOOL", "b1", 1, (const char *const[]){"o1"});
}

/* ---------------------------------------------------------------- out of stock */

static void test_sends_email_on_out_of_stock_error(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("b1", "POPULAR-CURTAINS", 9));
    ap_product_t *before = snapshot(app, "POPULAR-CURTAINS");
    size_t events = npublished(app);

    ok(app, allocate("o1", "POPULAR-CURTAINS", 10));

    assert_int_equal(ap_fake_notifier_count(NOTIFIER(app)), 1);
    assert_string_equal(ap_fake_notifier_to(NOTIFIER(app), 0), "stock@made.com");
    assert_string_equal(ap_fake_notifier_to(NOTIFIER(app), 0), AP_NOTIFY_TO_DEFAULT);
    assert_non_null(strstr(ap_fake_notifier_body(NOTIFIER(app), 0),
                           "Out of stock for POPULAR-CURTAINS"));

    assert_int_equal(npublished(app), events + 1);
    const ap_msg_t *evt = published(app, events);
    assert_event_type(evt, AP_EVT_OUT_OF_STOCK);
    assert_string_equal(evt->sku, "POPULAR-CURTAINS");

    /* An outcome, not a change: the product and the view are as they were. */
    assert_unchanged(app, before);
    assert_view(app, "o1", 0, NULL);
}

static void test_out_of_stock_email_goes_to_configured_address(void **state)
{
    (void)state;
    ap_app_t *app = new_app("buyers@example.com");
    ok(app, create_batch("b1", "RARE-VASE", 1));
    ok(app, allocate("o1", "RARE-VASE", 2));
    assert_int_equal(ap_fake_notifier_count(NOTIFIER(app)), 1);
    assert_string_equal(ap_fake_notifier_to(NOTIFIER(app), 0), "buyers@example.com");
    assert_non_null(strstr(ap_fake_notifier_body(NOTIFIER(app), 0), "Out of stock for RARE-VASE"));
    free_app(app);
}

static void test_configured_address_is_copied(void **state)
{
    (void)state;
    char address[64];
    strcpy(address, "copy@example.com");
    ap_app_t *app = new_app(address);
    strcpy(address, "changed@example.com");
    ok(app, create_batch("b1", "RARE-VASE", 1));
    ok(app, allocate("o1", "RARE-VASE", 2));
    assert_string_equal(ap_fake_notifier_to(NOTIFIER(app), 0), "copy@example.com");
    free_app(app);
}

/* ---------------------------------------------------------------- change_batch_quantity */

static void test_changes_available_quantity(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("batch1", "ADORABLE-SETTEE", 100));
    assert_int_equal(stored_available(app, "ADORABLE-SETTEE", "batch1"), 100);
    ok(app, change_qty("batch1", 50));
    assert_int_equal(stored_available(app, "ADORABLE-SETTEE", "batch1"), 50);
    assert_int_equal(stored_batch(app, "ADORABLE-SETTEE", "batch1")->purchased_qty, 50);

    const ap_msg_t *evt = published(app, npublished(app) - 1);
    assert_event_type(evt, AP_EVT_BATCH_QUANTITY_CHANGED);
    assert_string_equal(evt->ref, "batch1");
    assert_string_equal(evt->sku, "ADORABLE-SETTEE");
    assert_int_equal(evt->qty, 50);
}

static void test_change_quantity_of_unknown_batch_is_rejected(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("batch1", "ADORABLE-SETTEE", 100));
    ap_product_t *before = snapshot(app, "ADORABLE-SETTEE");
    trace_t t = trace(app);

    rejected(app, change_qty("no-such-batch", 5), AP_ERR_UNKNOWN_BATCH);
    assert_string_equal(ap_err_reason(AP_ERR_UNKNOWN_BATCH), "unknown_batch");
    assert_unchanged(app, before);
    assert_same_trace(app, t);
}

static void test_reallocates_if_necessary(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("batch1", "INDIFFERENT-TABLE", 50));
    ok(app, create_shipment("batch2", "INDIFFERENT-TABLE", 50, TODAY));
    ok(app, allocate("order1", "INDIFFERENT-TABLE", 20));
    ok(app, allocate("order2", "INDIFFERENT-TABLE", 20));
    assert_int_equal(stored_available(app, "INDIFFERENT-TABLE", "batch1"), 10);
    assert_int_equal(stored_available(app, "INDIFFERENT-TABLE", "batch2"), 50);
    int64_t version = stored_version(app, "INDIFFERENT-TABLE");
    size_t events = npublished(app);

    ok(app, change_qty("batch1", 25));

    /* order2, the last allocated, leaves batch1 (25 - 20 = 5) and moves to batch2. */
    assert_int_equal(stored_available(app, "INDIFFERENT-TABLE", "batch1"), 5);
    assert_int_equal(stored_available(app, "INDIFFERENT-TABLE", "batch2"), 30);
    assert_stored_lines(app, "INDIFFERENT-TABLE", "batch1", 1, (const char *const[]){"order1"});
    assert_stored_lines(app, "INDIFFERENT-TABLE", "batch2", 1, (const char *const[]){"order2"});
    assert_true(stored_version(app, "INDIFFERENT-TABLE") > version);

    assert_int_equal(npublished(app), events + 3);
    const ap_msg_t *evt = published(app, events);
    assert_event_type(evt, AP_EVT_BATCH_QUANTITY_CHANGED);
    assert_string_equal(evt->ref, "batch1");
    assert_string_equal(evt->sku, "INDIFFERENT-TABLE");
    assert_int_equal(evt->qty, 25);
    assert_line_event(published(app, events + 1), AP_EVT_DEALLOCATED, "order2",
                      "INDIFFERENT-TABLE", 20, "batch1");
    assert_line_event(published(app, events + 2), AP_EVT_ALLOCATED, "order2",
                      "INDIFFERENT-TABLE", 20, "batch2");
    assert_int_equal(ap_fake_notifier_count(NOTIFIER(app)), 0);

    /* The read model followed. */
    assert_int_equal(view_rows(app, "order2", "batch1"), 0);
    assert_int_equal(view_rows(app, "order2", "batch2"), 1);
    assert_view(app, "order1", 1, (const ap_allocation_row_t[]){{"INDIFFERENT-TABLE", "batch1"}});
    assert_view(app, "order2", 1, (const ap_allocation_row_t[]){{"INDIFFERENT-TABLE", "batch2"}});
}

static void test_reallocation_ends_out_of_stock_when_no_batch_fits(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("batch1", "LONELY-TABLE", 50));
    ok(app, create_shipment("batch2", "LONELY-TABLE", 10, TODAY));
    ok(app, allocate("order1", "LONELY-TABLE", 20));
    ok(app, allocate("order2", "LONELY-TABLE", 20));
    size_t events = npublished(app);

    ok(app, change_qty("batch1", 25));

    /* order2 (20) fits neither batch1 (5 left) nor batch2 (10). */
    assert_stored_lines(app, "LONELY-TABLE", "batch1", 1, (const char *const[]){"order1"});
    assert_stored_lines(app, "LONELY-TABLE", "batch2", 0, NULL);
    assert_int_equal(stored_available(app, "LONELY-TABLE", "batch1"), 5);

    assert_int_equal(npublished(app), events + 3);
    assert_event_type(published(app, events), AP_EVT_BATCH_QUANTITY_CHANGED);
    assert_line_event(published(app, events + 1), AP_EVT_DEALLOCATED, "order2", "LONELY-TABLE",
                      20, "batch1");
    assert_event_type(published(app, events + 2), AP_EVT_OUT_OF_STOCK);
    assert_string_equal(published(app, events + 2)->sku, "LONELY-TABLE");

    assert_int_equal(ap_fake_notifier_count(NOTIFIER(app)), 1);
    assert_string_equal(ap_fake_notifier_to(NOTIFIER(app), 0), "stock@made.com");
    assert_non_null(
        strstr(ap_fake_notifier_body(NOTIFIER(app), 0), "Out of stock for LONELY-TABLE"));

    assert_view(app, "order2", 0, NULL);
    assert_view(app, "order1", 1, (const ap_allocation_row_t[]){{"LONELY-TABLE", "batch1"}});
}

static void test_events_are_handled_in_fifo_order(void **state)
{
    ap_app_t *app = *state;
    /* Both lines leave batch1; each reallocation's Allocated joins the end of the queue,
     * behind the second Deallocated (a queue, not a recursion). */
    ok(app, create_batch("batch1", "QUEUED-LAMP", 30));
    ok(app, create_shipment("batch2", "QUEUED-LAMP", 100, TODAY));
    ok(app, allocate("o1", "QUEUED-LAMP", 10));
    ok(app, allocate("o2", "QUEUED-LAMP", 15));
    size_t events = npublished(app);

    ok(app, change_qty("batch1", 0));

    assert_int_equal(npublished(app), events + 5);
    assert_event_type(published(app, events), AP_EVT_BATCH_QUANTITY_CHANGED);
    assert_line_event(published(app, events + 1), AP_EVT_DEALLOCATED, "o2", "QUEUED-LAMP", 15,
                      "batch1");
    assert_line_event(published(app, events + 2), AP_EVT_DEALLOCATED, "o1", "QUEUED-LAMP", 10,
                      "batch1");
    assert_line_event(published(app, events + 3), AP_EVT_ALLOCATED, "o2", "QUEUED-LAMP", 15,
                      "batch2");
    assert_line_event(published(app, events + 4), AP_EVT_ALLOCATED, "o1", "QUEUED-LAMP", 10,
                      "batch2");

    assert_stored_lines(app, "QUEUED-LAMP", "batch1", 0, NULL);
    assert_stored_lines(app, "QUEUED-LAMP", "batch2", 2, (const char *const[]){"o2", "o1"});
    assert_view(app, "o1", 1, (const ap_allocation_row_t[]){{"QUEUED-LAMP", "batch2"}});
    assert_view(app, "o2", 1, (const ap_allocation_row_t[]){{"QUEUED-LAMP", "batch2"}});
}

/* ---------------------------------------------------------------- publish and views */

static void test_every_event_reaches_the_publisher(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_shipment("b1", "EVERY-SKU", 10, TOMORROW)); /* BatchCreated */
    ok(app, allocate("o1", "EVERY-SKU", 10));                  /* Allocated */
    ok(app, allocate("o2", "EVERY-SKU", 1));                   /* OutOfStock */
    ok(app, change_qty("b1", 5)); /* BatchQuantityChanged, Deallocated, OutOfStock */

    assert_int_equal(npublished(app), 6);
    const ap_msg_t *evt = published(app, 0);
    assert_event_type(evt, AP_EVT_BATCH_CREATED);
    assert_string_equal(evt->ref, "b1");
    assert_string_equal(evt->sku, "EVERY-SKU");
    assert_int_equal(evt->qty, 10);
    assert_true(evt->has_eta);
    assert_int_equal(evt->eta, TOMORROW);
    assert_line_event(published(app, 1), AP_EVT_ALLOCATED, "o1", "EVERY-SKU", 10, "b1");
    assert_event_type(published(app, 2), AP_EVT_OUT_OF_STOCK);
    assert_string_equal(published(app, 2)->sku, "EVERY-SKU");
    evt = published(app, 3);
    assert_event_type(evt, AP_EVT_BATCH_QUANTITY_CHANGED);
    assert_string_equal(evt->ref, "b1");
    assert_string_equal(evt->sku, "EVERY-SKU");
    assert_int_equal(evt->qty, 5);
    assert_line_event(published(app, 4), AP_EVT_DEALLOCATED, "o1", "EVERY-SKU", 10, "b1");
    assert_event_type(published(app, 5), AP_EVT_OUT_OF_STOCK);
    assert_string_equal(published(app, 5)->sku, "EVERY-SKU");

    assert_int_equal(ap_fake_notifier_count(NOTIFIER(app)), 2);
}

static void test_view_follows_allocated_and_deallocated(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("b1", "VIEWED-DESK", 10));
    ok(app, allocate("o1", "VIEWED-DESK", 4));
    ok(app, allocate("o2", "VIEWED-DESK", 6));
    assert_int_equal(ap_fake_uow_view_count(UOW(app)), 2);
    assert_view(app, "o1", 1, (const ap_allocation_row_t[]){{"VIEWED-DESK", "b1"}});
    assert_view(app, "o2", 1, (const ap_allocation_row_t[]){{"VIEWED-DESK", "b1"}});

    /* o2 is taken back and cannot go anywhere: its row goes, o1's stays. */
    ok(app, change_qty("b1", 5));
    assert_int_equal(ap_fake_uow_view_count(UOW(app)), 1);
    assert_int_equal(view_rows(app, "o2", NULL), 0);
    assert_view(app, "o2", 0, NULL);
    assert_view(app, "o1", 1, (const ap_allocation_row_t[]){{"VIEWED-DESK", "b1"}});

    /* Everything taken back: the view is empty. */
    ok(app, change_qty("b1", 0));
    assert_int_equal(ap_fake_uow_view_count(UOW(app)), 0);
    assert_view(app, "o1", 0, NULL);
}

static void test_view_lists_an_orders_allocations_in_order(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("chair-batch", "DINING-CHAIR", 10));
    ok(app, create_batch("table-batch", "DINING-TABLE", 10));
    ok(app, create_batch("lamp-batch", "DINING-LAMP", 10));
    ok(app, allocate("order-1", "DINING-TABLE", 1));
    ok(app, allocate("other-order", "DINING-LAMP", 1));
    ok(app, allocate("order-1", "DINING-CHAIR", 4));
    ok(app, allocate("order-1", "DINING-LAMP", 2));

    assert_view(app, "order-1", 3,
                (const ap_allocation_row_t[]){{"DINING-TABLE", "table-batch"},
                                              {"DINING-CHAIR", "chair-batch"},
                                              {"DINING-LAMP", "lamp-batch"}});
    assert_view(app, "other-order", 1,
                (const ap_allocation_row_t[]){{"DINING-LAMP", "lamp-batch"}});
}

static void test_view_not_found_for_unknown_order(void **state)
{
    ap_app_t *app = *state;
    assert_view(app, "nobody", 0, NULL);
    ok(app, create_batch("b1", "SOME-SKU", 10));
    ok(app, allocate("o1", "SOME-SKU", 1));
    assert_view(app, "nobody", 0, NULL);
    assert_view(app, "o", 0, NULL);
}

/* ---------------------------------------------------------------- rejections */

static void test_rejected_commands_leave_no_trace(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("b1", "TRACELESS-SOFA", 20));
    ok(app, create_shipment("b2", "TRACELESS-SOFA", 20, TOMORROW));
    ok(app, allocate("o1", "TRACELESS-SOFA", 5));
    ap_product_t *before = snapshot(app, "TRACELESS-SOFA");
    trace_t t = trace(app);
    uint64_t rejected_before = app->bus.stats.commands_rejected;

    rejected(app, allocate("o2", "NO-SUCH-SOFA", 5), AP_ERR_INVALID_SKU);
    rejected(app, change_qty("b3", 5), AP_ERR_UNKNOWN_BATCH);
    rejected(app, create_batch("b1", "TRACELESS-SOFA", 21), AP_ERR_BATCH_EXISTS);
    rejected(app, create_batch("b2", "ANOTHER-SOFA", 20), AP_ERR_BATCH_EXISTS);

    assert_unchanged(app, before);
    assert_null(ap_fake_uow_stored(UOW(app), "NO-SUCH-SOFA"));
    assert_null(ap_fake_uow_stored(UOW(app), "ANOTHER-SOFA"));
    assert_same_trace(app, t);
    assert_int_equal(app->bus.stats.commands_rejected, rejected_before + 4);

    /* And the processor carries on. */
    ok(app, allocate("o3", "TRACELESS-SOFA", 5));
    assert_stored_lines(app, "TRACELESS-SOFA", "b1", 2, (const char *const[]){"o1", "o3"});
}

static void test_invalid_commands_are_rejected_by_the_bus(void **state)
{
    ap_app_t *app = *state;
    /* docs/domain.md: validation rejects qty <= 0 for Allocate, qty < 0 for the batch commands
     * and empty fields, and a rejection changes nothing, whichever door the command used. */
    ok(app, create_batch("b1", "STRICT-SKU", 20));
    ap_product_t *before = snapshot(app, "STRICT-SKU");
    trace_t t = trace(app);

    rejected(app, allocate("o1", "STRICT-SKU", 0), AP_ERR_INVALID_COMMAND);
    rejected(app, allocate("o1", "STRICT-SKU", -5), AP_ERR_INVALID_COMMAND);
    rejected(app, allocate("", "STRICT-SKU", 5), AP_ERR_INVALID_COMMAND);
    rejected(app, change_qty("b1", -1), AP_ERR_INVALID_COMMAND);
    rejected(app, create_batch("b9", "STRICT-SKU", -1), AP_ERR_INVALID_COMMAND);
    rejected(app, create_batch("", "STRICT-SKU", 1), AP_ERR_INVALID_COMMAND);
    rejected(app, create_batch("b9", "", 1), AP_ERR_INVALID_COMMAND);

    assert_unchanged(app, before);
    assert_same_trace(app, t);
    assert_null(ap_fake_uow_stored(UOW(app), ""));
}

static void test_zero_quantity_batch_commands_are_accepted(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("empty", "ZERO-SKU", 0));
    assert_int_equal(stored_available(app, "ZERO-SKU", "empty"), 0);
    ok(app, create_batch("b1", "ZERO-SKU", 5));
    ok(app, allocate("o1", "ZERO-SKU", 5));
    ok(app, change_qty("b1", 0));
    assert_int_equal(stored_batch(app, "ZERO-SKU", "b1")->purchased_qty, 0);
    assert_stored_lines(app, "ZERO-SKU", "b1", 0, NULL);
}

/* ---------------------------------------------------------------- versions */

static void test_version_numbers_after_a_sequence(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("b1", "VERSIONED-BED", 10));
    assert_int_equal(stored_version(app, "VERSIONED-BED"), 1);
    ok(app, create_shipment("b2", "VERSIONED-BED", 10, TOMORROW));
    assert_int_equal(stored_version(app, "VERSIONED-BED"), 2);
    ok(app, create_batch("b1", "VERSIONED-BED", 10)); /* identical: no-op */
    assert_int_equal(stored_version(app, "VERSIONED-BED"), 2);
    ok(app, allocate("o1", "VERSIONED-BED", 4));
    assert_int_equal(stored_version(app, "VERSIONED-BED"), 3);
    ok(app, allocate("o1", "VERSIONED-BED", 4)); /* same line: no-op */
    assert_int_equal(stored_version(app, "VERSIONED-BED"), 3);
    ok(app, allocate("o2", "VERSIONED-BED", 11)); /* out of stock */
    assert_int_equal(stored_version(app, "VERSIONED-BED"), 3);
    ok(app, change_qty("b1", 20));
    assert_int_equal(stored_version(app, "VERSIONED-BED"), 4);
    rejected(app, create_batch("b1", "VERSIONED-BED", 11), AP_ERR_BATCH_EXISTS);
    assert_int_equal(stored_version(app, "VERSIONED-BED"), 4);

    /* Another product has a version of its own. */
    ok(app, create_batch("c1", "VERSIONED-COT", 10));
    assert_int_equal(stored_version(app, "VERSIONED-COT"), 1);
    assert_int_equal(stored_version(app, "VERSIONED-BED"), 4);
}

/* ---------------------------------------------------------------- transactions */

static void test_conflict_is_retried_and_applied_once(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("b1", "CONTENDED-CHAIR", 100));
    int64_t version = stored_version(app, "CONTENDED-CHAIR");
    uint64_t retries = app->bus.stats.retries;

    ap_fake_uow_fail_commits(UOW(app), AP_ERR_CONFLICT, 2);
    ok(app, allocate("o1", "CONTENDED-CHAIR", 10));

    assert_stored_lines(app, "CONTENDED-CHAIR", "b1", 1, (const char *const[]){"o1"});
    assert_int_equal(stored_available(app, "CONTENDED-CHAIR", "b1"), 90);
    assert_int_equal(stored_version(app, "CONTENDED-CHAIR"), version + 1);
    assert_int_equal(ap_fake_uow_view_count(UOW(app)), 1);
    assert_int_equal(view_rows(app, "o1", "b1"), 1);
    assert_true(ap_fake_clock_slept_ms(app->deps.clock) > 0);
    assert_int_equal(app->bus.stats.retries, retries + 2);
}

static void test_conflict_beyond_max_attempts_applies_nothing(void **state)
{
    ap_app_t *app = *state;
    ok(app, create_batch("b1", "CONTENDED-CHAIR", 100));
    ap_product_t *before = snapshot(app, "CONTENDED-CHAIR");
    size_t commits = ap_fake_uow_commits(UOW(app));
    unsigned max_attempts = app->bus.retry.max_attempts;
    assert_true(max_attempts >= 1);
    uint64_t retries = app->bus.stats.retries;

    ap_fake_uow_fail_commits(UOW(app), AP_ERR_CONFLICT, max_attempts + 1);
    ap_msg_t cmd = allocate("o1", "CONTENDED-CHAIR", 10);
    char why[WHY_SIZE] = "";
    assert_int_equal(ap_bus_execute(&app->bus, &cmd, why, sizeof why), AP_ERR_CONFLICT);

    assert_unchanged(app, before);
    assert_int_equal(ap_fake_uow_view_count(UOW(app)), 0);
    assert_int_equal(ap_fake_uow_commits(UOW(app)), commits);
    assert_view(app, "o1", 0, NULL);
    /* Exactly max_attempts attempts: the first and max_attempts - 1 retries. */
    assert_int_equal(app->bus.stats.retries, retries + max_attempts - 1);

    /* One injected failure is left: the next command is retried once and goes through. */
    retries = app->bus.stats.retries;
    ok(app, allocate("o1", "CONTENDED-CHAIR", 10));
    assert_int_equal(app->bus.stats.retries, retries + 1);
    assert_stored_lines(app, "CONTENDED-CHAIR", "b1", 1, (const char *const[]){"o1"});
    assert_int_equal(stored_version(app, "CONTENDED-CHAIR"), 2);
    assert_int_equal(view_rows(app, "o1", "b1"), 1);
    assert_int_equal(ap_fake_uow_view_count(UOW(app)), 1);
}

static void test_commands_share_the_callers_transaction(void **state)
{
    ap_app_t *app = *state;
    char why[WHY_SIZE] = "";
    size_t commits = ap_fake_uow_commits(UOW(app));

    assert_int_equal(ap_uow_begin(UOW(app)), AP_OK);
    ap_msg_t cmd = create_batch("b1", "BATCHED-SKU", 10);
    assert_int_equal(ap_bus_handle(&app->bus, &cmd, why, sizeof why), AP_OK);
    cmd = allocate("o1", "BATCHED-SKU", 3);
    assert_int_equal(ap_bus_handle(&app->bus, &cmd, why, sizeof why), AP_OK);
    assert_int_equal(ap_uow_commit(UOW(app)), AP_OK);

    assert_int_equal(ap_fake_uow_commits(UOW(app)), commits + 1);
    assert_stored_lines(app, "BATCHED-SKU", "b1", 1, (const char *const[]){"o1"});
    assert_view(app, "o1", 1, (const ap_allocation_row_t[]){{"BATCHED-SKU", "b1"}});
}

static void test_rolled_back_transaction_applies_nothing(void **state)
{
    ap_app_t *app = *state;
    char why[WHY_SIZE] = "";
    ok(app, create_batch("b1", "UNDONE-SKU", 10));
    ap_product_t *before = snapshot(app, "UNDONE-SKU");

    assert_int_equal(ap_uow_begin(UOW(app)), AP_OK);
    ap_msg_t cmd = allocate("o1", "UNDONE-SKU", 3);
    assert_int_equal(ap_bus_handle(&app->bus, &cmd, why, sizeof why), AP_OK);
    cmd = create_batch("b2", "UNDONE-OTHER", 10);
    assert_int_equal(ap_bus_handle(&app->bus, &cmd, why, sizeof why), AP_OK);
    ap_uow_rollback(UOW(app));

    assert_unchanged(app, before);
    assert_null(ap_fake_uow_stored(UOW(app), "UNDONE-OTHER"));
    assert_int_equal(ap_fake_uow_view_count(UOW(app)), 0);
}

static void test_each_command_in_a_shared_transaction_fails_alone(void **state)
{
    ap_app_t *app = *state;
    char why[WHY_SIZE] = "";

    assert_int_equal(ap_uow_begin(UOW(app)), AP_OK);
    ap_msg_t cmd = create_batch("b1", "SHARED-SKU", 10);
    assert_int_equal(ap_bus_execute(&app->bus, &cmd, why, sizeof why), AP_OK);
    cmd = allocate("o1", "SHARED-SKU", 4);
    assert_int_equal(ap_bus_execute(&app->bus, &cmd, why, sizeof why), AP_OK);
    cmd = create_batch("b1", "SHARED-SKU", 99);
    assert_int_equal(ap_bus_execute(&app->bus, &cmd, why, sizeof why), AP_ERR_BATCH_EXISTS);
    cmd = allocate("o2", "UNKNOWN-SKU", 1);
    assert_int_equal(ap_bus_execute(&app->bus, &cmd, why, sizeof why), AP_ERR_INVALID_SKU);
    cmd = allocate("o3", "SHARED-SKU", 6);
    assert_int_equal(ap_bus_execute(&app->bus, &cmd, why, sizeof why), AP_OK);
    assert_int_equal(ap_uow_commit(UOW(app)), AP_OK);

    /* The rejected ones left nothing; the others all landed. */
    assert_int_equal(stored_batch(app, "SHARED-SKU", "b1")->purchased_qty, 10);
    assert_stored_lines(app, "SHARED-SKU", "b1", 2, (const char *const[]){"o1", "o3"});
    assert_int_equal(stored_version(app, "SHARED-SKU"), 3);
    assert_null(ap_fake_uow_stored(UOW(app), "UNKNOWN-SKU"));
    assert_view(app, "o1", 1, (const ap_allocation_row_t[]){{"SHARED-SKU", "b1"}});
    assert_view(app, "o2", 0, NULL);
    assert_view(app, "o3", 1, (const ap_allocation_row_t[]){{"SHARED-SKU", "b1"}});
}

static void test_lost_connection_is_retried_like_a_conflict(void **state)
{
    ap_app_t *app = *state;
    /* bus.h: ap_bus_execute retries "while the failure is transient", and error.h calls
     * lost connections (AP_ERR_UNAVAILABLE) transient. */
    assert_true(ap_err_is_transient(AP_ERR_UNAVAILABLE));
    ok(app, create_batch("b1", "FLAKY-LINK", 100));
    ap_fake_uow_fail_commits(UOW(app), AP_ERR_UNAVAILABLE, 1);
    ok(app, allocate("o1", "FLAKY-LINK", 10));
    assert_stored_lines(app, "FLAKY-LINK", "b1", 1, (const char *const[]){"o1"});
    assert_int_equal(stored_version(app, "FLAKY-LINK"), 2);
    assert_int_equal(view_rows(app, "o1", "b1"), 1);
}

static void test_rejection_inside_the_callers_scope_leaves_nothing(void **state)
{
    ap_app_t *app = *state;
    char why[WHY_SIZE] = "";

    assert_int_equal(ap_uow_begin(UOW(app)), AP_OK);
    ap_msg_t cmd = create_batch("b1", "HANDLED-SKU", 10);
    assert_int_equal(ap_bus_handle(&app->bus, &cmd, why, sizeof why), AP_OK);
    cmd = create_batch("b1", "HANDLED-SKU", 12);
    assert_int_equal(ap_bus_handle(&app->bus, &cmd, why, sizeof why), AP_ERR_BATCH_EXISTS);
    assert_true(strlen(why) > 0);
    cmd = create_batch("b1", "OTHER-HANDLED-SKU", 10);
    assert_int_equal(ap_bus_handle(&app->bus, &cmd, why, sizeof why), AP_ERR_BATCH_EXISTS);
    cmd = allocate("o1", "NOT-HANDLED-SKU", 1);
    assert_int_equal(ap_bus_handle(&app->bus, &cmd, why, sizeof why), AP_ERR_INVALID_SKU);
    assert_string_equal(why, "Invalid sku NOT-HANDLED-SKU");
    cmd = allocate("o2", "HANDLED-SKU", 3);
    assert_int_equal(ap_bus_handle(&app->bus, &cmd, why, sizeof why), AP_OK);
    assert_string_equal(why, "");
    assert_int_equal(ap_uow_commit(UOW(app)), AP_OK);

    assert_int_equal(stored_batch(app, "HANDLED-SKU", "b1")->purchased_qty, 10);
    assert_stored_lines(app, "HANDLED-SKU", "b1", 1, (const char *const[]){"o2"});
    assert_int_equal(stored_version(app, "HANDLED-SKU"), 2);
    assert_null(ap_fake_uow_stored(UOW(app), "OTHER-HANDLED-SKU"));
    assert_null(ap_fake_uow_stored(UOW(app), "NOT-HANDLED-SKU"));
    assert_int_equal(npublished(app), 2); /* BatchCreated, Allocated */
}

static void test_failing_event_handler_does_not_stop_the_others(void **state)
{
    (void)state;
    ap_publisher_t *pub = ap_fake_flaky_publisher_new(AP_EVT_ALLOCATED, 1, 1, AP_ERR_IO);
    ap_publisher_t *seen = ap_fake_flaky_publisher_inner(pub);
    ap_app_t *app = new_app_with(pub, NULL);
    ok(app, create_batch("b1", "STUBBORN-SKU", 10));
    uint64_t failures = app->bus.stats.event_handler_failures;

    /* Publishing Allocated fails: the command still succeeds, and the view handler after
     * the publish handler still runs. */
    ok(app, allocate("o1", "STUBBORN-SKU", 4));
    assert_int_equal(app->bus.stats.event_handler_failures, failures + 1);
    assert_stored_lines(app, "STUBBORN-SKU", "b1", 1, (const char *const[]){"o1"});
    assert_view(app, "o1", 1, (const ap_allocation_row_t[]){{"STUBBORN-SKU", "b1"}});
    assert_int_equal(ap_fake_publisher_count(seen), 1); /* only BatchCreated */

    /* The next one goes through whole. */
    ok(app, allocate("o2", "STUBBORN-SKU", 4));
    assert_int_equal(ap_fake_publisher_count(seen), 2);
    assert_line_event(ap_fake_publisher_event(seen, 1), AP_EVT_ALLOCATED, "o2",
                      "STUBBORN-SKU", 4, "b1");
    assert_int_equal(app->bus.stats.event_handler_failures, failures + 1);
    free_app(app);
}

static void test_failing_publish_of_deallocated_still_reallocates(void **state)
{
    (void)state;
    ap_publisher_t *pub = ap_fake_flaky_publisher_new(AP_EVT_DEALLOCATED, 1, 1, AP_ERR_IO);
    ap_app_t *app = new_app_with(pub, NULL);
    ok(app, create_batch("batch1", "RESILIENT-TABLE", 50));
    ok(app, create_shipment("batch2", "RESILIENT-TABLE", 50, TODAY));
    ok(app, allocate("order1", "RESILIENT-TABLE", 20));
    ok(app, allocate("order2", "RESILIENT-TABLE", 20));

    ok(app, change_qty("batch1", 25));
    assert_stored_lines(app, "RESILIENT-TABLE", "batch1", 1, (const char *const[]){"order1"});
    assert_stored_lines(app, "RESILIENT-TABLE", "batch2", 1, (const char *const[]){"order2"});
    assert_view(app, "order2", 1, (const ap_allocation_row_t[]){{"RESILIENT-TABLE", "batch2"}});
    assert_int_equal(app->bus.stats.event_handler_failures, 1);
    free_app(app);
}

static void test_transient_failure_in_an_event_handler_retries_the_whole_command(void **state)
{
    (void)state;
    ap_publisher_t *pub = ap_fake_flaky_publisher_new(AP_EVT_ALLOCATED, 1, 1, AP_ERR_CONFLICT);
    ap_publisher_t *seen = ap_fake_flaky_publisher_inner(pub);
    ap_app_t *app = new_app_with(pub, NULL);
    ok(app, create_batch("b1", "RETRIED-SKU", 10));
    int64_t version = stored_version(app, "RETRIED-SKU");
    uint64_t retries = app->bus.stats.retries;

    ok(app, allocate("o1", "RETRIED-SKU", 4));

    /* Applied once: one line, one version step, one row, one Allocated that got out. */
    assert_int_equal(app->bus.stats.retries, retries + 1);
    assert_stored_lines(app, "RETRIED-SKU", "b1", 1, (const char *const[]){"o1"});
    assert_int_equal(stored_version(app, "RETRIED-SKU"), version + 1);
    assert_int_equal(view_rows(app, "o1", NULL), 1);
    assert_int_equal(ap_fake_publisher_count(seen), 2);
    assert_line_event(ap_fake_publisher_event(seen, 1), AP_EVT_ALLOCATED, "o1",
                      "RETRIED-SKU", 4, "b1");
    free_app(app);
}

static void test_failing_notification_does_not_fail_the_command(void **state)
{
    (void)state;
    failing_notifier_t *notifier = calloc(1, sizeof *notifier);
    assert_non_null(notifier);
    notifier->notifier.ops = &failing_notifier_ops;
    ap_publisher_t *pub = ap_fake_publisher_new();
    ap_app_t *app = new_app_with(pub, &notifier->notifier);

    ok(app, create_batch("b1", "UNNOTIFIED-SKU", 1));
    ok(app, allocate("o1", "UNNOTIFIED-SKU", 2));
    assert_int_equal(notifier->attempts, 1);
    assert_int_equal(app->bus.stats.event_handler_failures, 1);
    assert_int_equal(ap_fake_publisher_count(pub), 2);
    assert_event_type(ap_fake_publisher_event(pub, 1), AP_EVT_OUT_OF_STOCK);
    free_app(app);
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_add_batch_for_new_product),
        TEST(test_add_batch_for_existing_product),
        TEST(test_add_batch_identical_repeat_is_accepted_without_event),
        TEST(test_add_batch_same_ref_different_fields_is_batch_exists),
        TEST(test_add_batch_existing_ref_in_another_sku_is_batch_exists),
        TEST(test_allocate_allocates),
        TEST(test_allocate_records_allocation_in_view),
        TEST(test_allocate_prefers_warehouse_stock),
        TEST(test_allocate_errors_for_invalid_sku),
        TEST(test_allocate_errors_for_invalid_sku_on_empty_store),
        TEST(test_allocate_commits),
        TEST(test_allocate_same_line_twice_is_idempotent),
        TEST(test_allocate_equal_quantity_boundary),
        TEST(test_sends_email_on_out_of_stock_error),
        cmocka_unit_test(test_out_of_stock_email_goes_to_configured_address),
        cmocka_unit_test(test_configured_address_is_copied),
        TEST(test_changes_available_quantity),
        TEST(test_change_quantity_of_unknown_batch_is_rejected),
        TEST(test_reallocates_if_necessary),
        TEST(test_reallocation_ends_out_of_stock_when_no_batch_fits),
        TEST(test_events_are_handled_in_fifo_order),
        TEST(test_every_event_reaches_the_publisher),
        TEST(test_view_follows_allocated_and_deallocated),
        TEST(test_view_lists_an_orders_allocations_in_order),
        TEST(test_view_not_found_for_unknown_order),
        TEST(test_rejected_commands_leave_no_trace),
        TEST(test_invalid_commands_are_rejected_by_the_bus),
        TEST(test_zero_quantity_batch_commands_are_accepted),
        TEST(test_version_numbers_after_a_sequence),
        TEST(test_conflict_is_retried_and_applied_once),
        TEST(test_conflict_beyond_max_attempts_applies_nothing),
        TEST(test_commands_share_the_callers_transaction),
        TEST(test_rolled_back_transaction_applies_nothing),
        TEST(test_each_command_in_a_shared_transaction_fails_alone),
        TEST(test_rejection_inside_the_callers_scope_leaves_nothing),
        TEST(test_lost_connection_is_retried_like_a_conflict),
        cmocka_unit_test(test_failing_event_handler_does_not_stop_the_others),
        cmocka_unit_test(test_failing_publish_of_deallocated_still_reallocates),
        cmocka_unit_test(test_transient_failure_in_an_event_handler_retries_the_whole_command),
        cmocka_unit_test(test_failing_notification_does_not_fail_the_command),
    };
    return cmocka_run_group_tests_name("handlers", tests, NULL, NULL);
}
