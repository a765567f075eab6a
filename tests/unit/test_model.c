/*
 * test_model.c - the domain model (model.h) on its own: OrderLine, Batch and the Product
 * aggregate, with the events and storage changes each operation records.
 *
 * The book's test_batches.py and test_product.py, ported, plus the rules docs/domain.md adds
 * (ties, idempotence, batch_exists, last-in-first-out deallocation, version numbers).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ap/error.h"
#include "ap/messages.h"
#include "ap/model.h"

#define TODAY 20000
#define TOMORROW 20001
#define LATER 20010

/* ---------------------------------------------------------------- helpers */

static ap_product_t *new_product(const char *sku)
{
    ap_product_t *product = ap_product_new(sku);
    assert_non_null(product);
    return product;
}

static ap_order_line_t make_line(const char *orderid, const char *sku, int64_t qty)
{
    ap_order_line_t line;
    assert_int_equal(ap_order_line_init(&line, orderid, sku, qty), AP_OK);
    return line;
}

/* Batch pointers move when a product grows: look them up again after every change. */
static ap_batch_t *batch(const ap_product_t *product, const char *ref)
{
    ap_batch_t *b = ap_product_find_batch(product, ref);
    if (!b)
        fail_msg("no batch %s in product %s", ref, product->sku);
    return b;
}

static void add_warehouse_batch(ap_product_t *product, const char *ref, int64_t qty)
{
    assert_int_equal(ap_product_add_batch(product, ref, qty, false, 0), AP_OK);
}

static void add_shipment(ap_product_t *product, const char *ref, int64_t qty, int32_t eta)
{
    assert_int_equal(ap_product_add_batch(product, ref, qty, true, eta), AP_OK);
}

/* Allocates a line of this product's sku; returns the chosen ref (NULL if out of stock). */
static const char *allocate(ap_product_t *product, const char *orderid, int64_t qty)
{
    ap_order_line_t line = make_line(orderid, product->sku, qty);
    const char *batchref = "not written";
    assert_int_equal(ap_product_allocate(product, &line, &batchref), AP_OK);
    return batchref;
}

static int64_t available(const ap_product_t *product, const char *ref)
{
    return ap_batch_available_qty(batch(product, ref));
}

static size_t batch_index(const ap_product_t *product, const char *ref)
{
    return (size_t)(batch(product, ref) - product->batches);
}

/* What a product has recorded so far, to check what an operation added. */
typedef struct mark {
    size_t nevents;
    size_t nchanges;
    int64_t version;
} mark_t;

static mark_t mark(const ap_product_t *product)
{
    return (mark_t){product->nevents, product->nchanges, product->version_number};
}

static void assert_nothing_recorded_since(const ap_product_t *product, mark_t m)
{
    assert_int_equal(product->nevents, m.nevents);
    assert_int_equal(product->nchanges, m.nchanges);
    assert_int_equal(product->version_number, m.version);
}

static const ap_msg_t *event(const ap_product_t *product, size_t i)
{
    if (i >= product->nevents)
        fail_msg("event %zu wanted, %zu recorded", i, product->nevents);
    return &product->events[i];
}

static const ap_change_t *change(const ap_product_t *product, size_t i)
{
    if (i >= product->nchanges)
        fail_msg("change %zu wanted, %zu recorded", i, product->nchanges);
    return &product->changes[i];
}

static void assert_line_event(const ap_msg_t *evt, ap_msg_type_t type, const char *orderid,
                              const char *sku, int64_t qty, const char *batchref)
{
    assert_int_equal(evt->type, type);
    assert_string_equal(evt->orderid, orderid);
    assert_string_equal(evt->sku, sku);
    assert_int_equal(evt->qty, qty);
    assert_string_equal(evt->batchref, batchref);
}

static void assert_line_change(const ap_change_t *chg, ap_change_kind_t kind, size_t batch_idx,
                               const char *orderid, const char *sku, int64_t qty)
{
    assert_int_equal(chg->kind, kind);
    assert_int_equal(chg->batch, batch_idx);
    assert_string_equal(chg->line.orderid, orderid);
    assert_string_equal(chg->line.sku, sku);
    assert_int_equal(chg->line.qty, qty);
}

static void assert_lines(const ap_product_t *product, const char *ref, size_t n,
                         const char *const *orderids)
{
    const ap_batch_t *b = batch(product, ref);
    assert_int_equal(b->nlines, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(ap_batch_line_orderid(b, i), orderids[i]);
}

/* ---------------------------------------------------------------- order lines */

static void test_order_line_init_and_equality(void **state)
{
    (void)state;
    ap_order_line_t a = make_line("o1", "RED-CHAIR", 10);
    assert_string_equal(a.orderid, "o1");
    assert_string_equal(a.sku, "RED-CHAIR");
    assert_int_equal(a.qty, 10);

    ap_order_line_t same = make_line("o1", "RED-CHAIR", 10);
    ap_order_line_t other_order = make_line("o2", "RED-CHAIR", 10);
    ap_order_line_t other_sku = make_line("o1", "BLUE-CHAIR", 10);
    ap_order_line_t other_qty = make_line("o1", "RED-CHAIR", 11);
    assert_true(ap_order_line_equal(&a, &same));
    assert_false(ap_order_line_equal(&a, &other_order));
    assert_false(ap_order_line_equal(&a, &other_sku));
    assert_false(ap_order_line_equal(&a, &other_qty));
}

/* ---------------------------------------------------------------- a new product */

static void test_new_product_is_empty_and_new(void **state)
{
    (void)state;
    ap_product_t *product = new_product("RED-CHAIR");
    assert_string_equal(product->sku, "RED-CHAIR");
    assert_int_equal(product->version_number, 0);
    assert_true(product->is_new);
    assert_int_equal(product->nbatches, 0);
    assert_int_equal(product->nevents, 0);
    assert_int_equal(product->nchanges, 0);
    assert_null(ap_product_find_batch(product, "b1"));
    ap_product_free(product);
    ap_product_free(NULL);

    char longer[AP_STR_MAX + 2];
    memset(longer, 's', AP_STR_MAX + 1);
    longer[AP_STR_MAX + 1] = '\0';
    assert_null(ap_product_new(longer));
}

/* ---------------------------------------------------------------- test_batches.py */

static void test_allocating_to_a_batch_reduces_the_available_quantity(void **state)
{
    (void)state;
    ap_product_t *product = new_product("SMALL-TABLE");
    add_shipment(product, "batch-001", 20, TODAY);
    assert_int_equal(available(product, "batch-001"), 20);
    allocate(product, "order-ref", 2);
    assert_int_equal(available(product, "batch-001"), 18);
    assert_int_equal(ap_batch_allocated_qty(batch(product, "batch-001")), 2);
    ap_product_free(product);
}

static void test_can_allocate_if_available_greater_than_required(void **state)
{
    (void)state;
    ap_product_t *product = new_product("ELEGANT-LAMP");
    add_shipment(product, "batch-001", 20, TODAY);
    ap_order_line_t line = make_line("order-123", "ELEGANT-LAMP", 2);
    assert_true(ap_batch_can_allocate(batch(product, "batch-001"), &line));
    assert_string_equal(allocate(product, "order-123", 2), "batch-001");
    ap_product_free(product);
}

static void test_cannot_allocate_if_available_smaller_than_required(void **state)
{
    (void)state;
    ap_product_t *product = new_product("ELEGANT-LAMP");
    add_shipment(product, "batch-001", 2, TODAY);
    ap_order_line_t line = make_line("order-123", "ELEGANT-LAMP", 20);
    assert_false(ap_batch_can_allocate(batch(product, "batch-001"), &line));
    assert_null(allocate(product, "order-123", 20));
    assert_int_equal(available(product, "batch-001"), 2);
    ap_product_free(product);
}

static void test_can_allocate_if_available_equal_to_required(void **state)
{
    (void)state;
    ap_product_t *product = new_product("ELEGANT-LAMP");
    add_shipment(product, "batch-001", 2, TODAY);
    ap_order_line_t line = make_line("order-123", "ELEGANT-LAMP", 2);
    assert_true(ap_batch_can_allocate(batch(product, "batch-001"), &line));
    assert_string_equal(allocate(product, "order-123", 2), "batch-001");
    assert_int_equal(available(product, "batch-001"), 0);
    assert_int_equal(event(product, product->nevents - 1)->type, AP_EVT_ALLOCATED);

    /* Now empty: one more unit does not fit. */
    ap_order_line_t one = make_line("order-124", "ELEGANT-LAMP", 1);
    assert_false(ap_batch_can_allocate(batch(product, "batch-001"), &one));
    assert_null(allocate(product, "order-124", 1));
    ap_product_free(product);
}

static void test_cannot_allocate_if_skus_do_not_match(void **state)
{
    (void)state;
    ap_product_t *product = new_product("UNCOMFORTABLE-CHAIR");
    add_warehouse_batch(product, "batch-001", 100);
    ap_order_line_t line = make_line("order-123", "EXPENSIVE-TOASTER", 10);
    assert_false(ap_batch_can_allocate(batch(product, "batch-001"), &line));

    mark_t before = mark(product);
    const char *batchref = "not written";
    assert_int_equal(ap_product_allocate(product, &line, &batchref), AP_ERR_INVALID_SKU);
    assert_nothing_recorded_since(product, before);
    assert_int_equal(available(product, "batch-001"), 100);
    ap_product_free(product);
}

static void test_allocation_is_idempotent(void **state)
{
    (void)state;
    ap_product_t *product = new_product("ANGULAR-DESK");
    add_shipment(product, "batch-001", 20, TODAY);
    allocate(product, "order-123", 2);
    mark_t before = mark(product);

    allocate(product, "order-123", 2);
    assert_int_equal(available(product, "batch-001"), 18);
    assert_int_equal(batch(product, "batch-001")->nlines, 1);
    /* No event, no storage write, no version bump. */
    assert_nothing_recorded_since(product, before);
    ap_product_free(product);
}

static void test_allocated_line_is_not_allocated_again_elsewhere(void **state)
{
    (void)state;
    /* The line filled the warehouse batch; asking again must not spill it into the
     * shipment nor report OutOfStock: the identical line is already allocated. */
    ap_product_t *product = new_product("ANGULAR-DESK");
    add_warehouse_batch(product, "warehouse", 10);
    add_shipment(product, "shipment", 100, TOMORROW);
    assert_string_equal(allocate(product, "order-123", 10), "warehouse");
    mark_t before = mark(product);

    allocate(product, "order-123", 10);
    assert_nothing_recorded_since(product, before);
    assert_int_equal(available(product, "warehouse"), 0);
    assert_int_equal(available(product, "shipment"), 100);
    ap_product_free(product);
}

static void test_same_order_with_another_qty_is_another_line(void **state)
{
    (void)state;
    /* Lines are values: equal only when orderid, sku and qty all are. */
    ap_product_t *product = new_product("ANGULAR-DESK");
    add_warehouse_batch(product, "batch-001", 20);
    allocate(product, "order-123", 2);
    mark_t before = mark(product);
    assert_string_equal(allocate(product, "order-123", 3), "batch-001");
    assert_int_equal(available(product, "batch-001"), 15);
    assert_int_equal(product->nevents, before.nevents + 1);
    assert_int_equal(product->version_number, before.version + 1);
    ap_product_free(product);
}

static void test_batch_has_line(void **state)
{
    (void)state;
    ap_product_t *product = new_product("ANGULAR-DESK");
    add_warehouse_batch(product, "batch-001", 20);
    allocate(product, "order-123", 2);
    ap_order_line_t same = make_line("order-123", "ANGULAR-DESK", 2);
    ap_order_line_t other = make_line("order-123", "ANGULAR-DESK", 3);
    assert_true(ap_batch_has_line(batch(product, "batch-001"), &same));
    assert_false(ap_batch_has_line(batch(product, "batch-001"), &other));
    ap_product_free(product);
}

/* ---------------------------------------------------------------- test_product.py */

static void test_prefers_warehouse_batches_to_shipments(void **state)
{
    (void)state;
    /* The shipment is created first, so creation order alone would pick it. */
    ap_product_t *product = new_product("RETRO-CLOCK");
    add_shipment(product, "shipment-batch", 100, TOMORROW);
    add_warehouse_batch(product, "in-stock-batch", 100);
    assert_string_equal(allocate(product, "oref", 10), "in-stock-batch");
    assert_int_equal(available(product, "in-stock-batch"), 90);
    assert_int_equal(available(product, "shipment-batch"), 100);
    ap_product_free(product);
}

static void test_prefers_earlier_batches(void **state)
{
    (void)state;
    ap_product_t *product = new_product("MINIMALIST-SPOON");
    add_shipment(product, "slow-batch", 100, LATER);
    add_shipment(product, "normal-batch", 100, TOMORROW);
    add_shipment(product, "speedy-batch", 100, TODAY);
    assert_string_equal(allocate(product, "order1", 10), "speedy-batch");
    assert_int_equal(available(product, "speedy-batch"), 90);
    assert_int_equal(available(product, "normal-batch"), 100);
    assert_int_equal(available(product, "slow-batch"), 100);
    ap_product_free(product);
}

static void test_prefers_earlier_batches_before_1970(void **state)
{
    (void)state;
    /* Dates before the epoch are negative day numbers and still sort as dates. */
    ap_product_t *product = new_product("VINTAGE-LAMP");
    add_shipment(product, "after-epoch", 100, 5);
    add_shipment(product, "before-epoch", 100, -10);
    assert_string_equal(allocate(product, "order1", 10), "before-epoch");
    ap_product_free(product);
}

static void test_ties_go_to_the_batch_created_first(void **state)
{
    (void)state;
    ap_product_t *product = new_product("TWIN-SOFA");
    add_warehouse_batch(product, "w-first", 10);
    add_warehouse_batch(product, "w-second", 10);
    add_shipment(product, "s-first", 10, TODAY);
    add_shipment(product, "s-second", 10, TODAY);

    assert_string_equal(allocate(product, "o1", 10), "w-first");
    assert_string_equal(allocate(product, "o2", 10), "w-second");
    assert_string_equal(allocate(product, "o3", 10), "s-first");
    assert_string_equal(allocate(product, "o4", 10), "s-second");
    assert_null(allocate(product, "o5", 1));
    ap_product_free(product);
}

static void test_lines_are_never_split(void **state)
{
    (void)state;
    /* The preferred batch cannot take all of the line: the next one that can takes it. */
    ap_product_t *product = new_product("TALL-SHELF");
    add_warehouse_batch(product, "warehouse", 5);
    add_shipment(product, "soon", 8, TODAY);
    add_shipment(product, "later", 20, LATER);
    assert_string_equal(allocate(product, "o1", 10), "later");
    assert_int_equal(available(product, "warehouse"), 5);
    assert_int_equal(available(product, "soon"), 8);
    assert_int_equal(available(product, "later"), 10);
    /* 5 + 8 + 10 = 23 units left, but no single batch has 11. */
    assert_null(allocate(product, "o2", 11));
    ap_product_free(product);
}

static void test_returns_allocated_batch_ref(void **state)
{
    (void)state;
    ap_product_t *product = new_product("HIGHBROW-POSTER");
    add_warehouse_batch(product, "in-stock-batch-ref", 100);
    add_shipment(product, "shipment-batch-ref", 100, TOMORROW);
    assert_string_equal(allocate(product, "oref", 10), "in-stock-batch-ref");

    /* The out-parameter is optional. */
    ap_order_line_t line = make_line("oref2", "HIGHBROW-POSTER", 10);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_OK);
    assert_int_equal(available(product, "in-stock-batch-ref"), 80);
    ap_product_free(product);
}

static void test_records_allocated_event_and_change(void **state)
{
    (void)state;
    ap_product_t *product = new_product("HIGHBROW-POSTER");
    add_shipment(product, "shipment", 100, TOMORROW);
    add_warehouse_batch(product, "in-stock", 100);
    mark_t before = mark(product);

    allocate(product, "oref", 10);
    assert_int_equal(product->nevents, before.nevents + 1);
    assert_line_event(event(product, before.nevents), AP_EVT_ALLOCATED, "oref",
                      "HIGHBROW-POSTER", 10, "in-stock");
    assert_int_equal(product->nchanges, before.nchanges + 1);
    assert_line_change(change(product, before.nchanges), AP_CHANGE_ADD_LINE,
                       batch_index(product, "in-stock"), "oref", "HIGHBROW-POSTER", 10);
    assert_int_equal(batch_index(product, "in-stock"), 1);
    ap_product_free(product);
}

static void test_records_out_of_stock_event_if_cannot_allocate(void **state)
{
    (void)state;
    ap_product_t *product = new_product("SMALL-FORK");
    add_shipment(product, "batch1", 10, TODAY);
    allocate(product, "order1", 10);
    mark_t before = mark(product);

    assert_null(allocate(product, "order2", 1));
    /* One OutOfStock event, and nothing else changed. */
    assert_int_equal(product->nevents, before.nevents + 1);
    const ap_msg_t *evt = event(product, before.nevents);
    assert_int_equal(evt->type, AP_EVT_OUT_OF_STOCK);
    assert_string_equal(evt->sku, "SMALL-FORK");
    assert_int_equal(product->nchanges, before.nchanges);
    assert_int_equal(product->version_number, before.version);
    assert_lines(product, "batch1", 1, (const char *const[]){"order1"});
    ap_product_free(product);
}

static void test_out_of_stock_with_no_batches_at_all(void **state)
{
    (void)state;
    ap_product_t *product = new_product("EMPTY-SHELF");
    mark_t before = mark(product);
    assert_null(allocate(product, "order1", 1));
    assert_int_equal(product->nevents, 1);
    assert_int_equal(event(product, 0)->type, AP_EVT_OUT_OF_STOCK);
    assert_int_equal(product->nchanges, before.nchanges);
    assert_int_equal(product->version_number, before.version);
    ap_product_free(product);
}

static void test_increments_version_number(void **state)
{
    (void)state;
    /* The book's test: a stored product at version 7 allocates and is at 8. */
    ap_product_t *product = ap_product_restore("SCANDI-PEN", 7);
    assert_non_null(product);
    assert_int_equal(ap_product_restore_batch(product, "b1", 100, false, 0, 0, NULL), AP_OK);
    ap_product_mark_complete(product); /* restored whole: it has no lines */
    allocate(product, "order1", 10);
    assert_int_equal(product->version_number, 8);
    ap_product_free(product);
}

static void test_version_moves_once_per_accepted_change_only(void **state)
{
    (void)state;
    ap_product_t *product = new_product("SCANDI-PEN");
    assert_int_equal(product->version_number, 0);

    add_warehouse_batch(product, "b1", 10); /* a new batch */
    assert_int_equal(product->version_number, 1);
    add_warehouse_batch(product, "b1", 10); /* identical again: no-op */
    assert_int_equal(product->version_number, 1);
    assert_int_equal(ap_product_add_batch(product, "b1", 11, false, 0), AP_ERR_BATCH_EXISTS);
    assert_int_equal(product->version_number, 1);

    allocate(product, "o1", 4); /* an allocation */
    assert_int_equal(product->version_number, 2);
    allocate(product, "o1", 4); /* the same line: no-op */
    assert_int_equal(product->version_number, 2);
    assert_null(allocate(product, "o2", 7)); /* out of stock */
    assert_int_equal(product->version_number, 2);

    ap_order_line_t wrong_sku = make_line("o3", "OTHER", 1);
    assert_int_equal(ap_product_allocate(product, &wrong_sku, NULL), AP_ERR_INVALID_SKU);
    assert_int_equal(product->version_number, 2);

    /* A quantity change bumps once, however many lines it deallocates. */
    allocate(product, "o4", 3);
    assert_int_equal(product->version_number, 3);
    assert_int_equal(ap_product_change_batch_quantity(product, "b1", 0), AP_OK);
    assert_int_equal(product->version_number, 4);
    assert_int_equal(ap_product_change_batch_quantity(product, "nope", 5), AP_ERR_UNKNOWN_BATCH);
    assert_int_equal(product->version_number, 4);
    ap_product_free(product);
}

/* ---------------------------------------------------------------- add_batch */

static void test_add_batch_records_batch_created_and_change(void **state)
{
    (void)state;
    ap_product_t *product = new_product("RED-CHAIR");
    assert_int_equal(ap_product_add_batch(product, "b1", 100, true, TOMORROW), AP_OK);
    add_warehouse_batch(product, "b2", 50);

    assert_int_equal(product->nbatches, 2);
    const ap_batch_t *b1 = &product->batches[0];
    assert_string_equal(b1->ref, "b1");
    assert_string_equal(b1->sku, "RED-CHAIR");
    assert_int_equal(b1->purchased_qty, 100);
    assert_true(b1->has_eta);
    assert_int_equal(b1->eta, TOMORROW);
    assert_int_equal(b1->nlines, 0);
    assert_int_equal(ap_batch_allocated_qty(b1), 0);
    assert_int_equal(ap_batch_available_qty(b1), 100);
    assert_string_equal(product->batches[1].ref, "b2");
    assert_false(product->batches[1].has_eta);

    assert_int_equal(product->nevents, 2);
    const ap_msg_t *evt = event(product, 0);
    assert_int_equal(evt->type, AP_EVT_BATCH_CREATED);
    assert_string_equal(evt->ref, "b1");
    assert_string_equal(evt->sku, "RED-CHAIR");
    assert_int_equal(evt->qty, 100);
    assert_true(evt->has_eta);
    assert_int_equal(evt->eta, TOMORROW);
    evt = event(product, 1);
    assert_int_equal(evt->type, AP_EVT_BATCH_CREATED);
    assert_string_equal(evt->ref, "b2");
    assert_int_equal(evt->qty, 50);
    assert_false(evt->has_eta);

    assert_int_equal(product->nchanges, 2);
    assert_int_equal(change(product, 0)->kind, AP_CHANGE_ADD_BATCH);
    assert_int_equal(change(product, 0)->batch, 0);
    assert_int_equal(change(product, 1)->kind, AP_CHANGE_ADD_BATCH);
    assert_int_equal(change(product, 1)->batch, 1);
    assert_int_equal(product->version_number, 2);
    ap_product_free(product);
}

static void test_add_batch_with_zero_qty(void **state)
{
    (void)state;
    ap_product_t *product = new_product("RED-CHAIR");
    add_warehouse_batch(product, "b0", 0);
    assert_int_equal(available(product, "b0"), 0);
    assert_null(allocate(product, "o1", 1));
    ap_product_free(product);
}

static void test_add_batch_identical_is_a_no_op(void **state)
{
    (void)state;
    ap_product_t *product = new_product("RED-CHAIR");
    assert_int_equal(ap_product_add_batch(product, "b1", 100, true, TOMORROW), AP_OK);
    add_warehouse_batch(product, "b2", 7);
    mark_t before = mark(product);

    assert_int_equal(ap_product_add_batch(product, "b1", 100, true, TOMORROW), AP_OK);
    add_warehouse_batch(product, "b2", 7);
    assert_nothing_recorded_since(product, before);
    assert_int_equal(product->nbatches, 2);

    /* Still a no-op once lines are allocated (the purchased qty is what is compared). */
    allocate(product, "o1", 30);
    before = mark(product);
    assert_int_equal(ap_product_add_batch(product, "b1", 100, true, TOMORROW), AP_OK);
    assert_nothing_recorded_since(product, before);
    assert_int_equal(available(product, "b2"), 7);
    assert_int_equal(ap_batch_available_qty(batch(product, "b1")) +
                         ap_batch_available_qty(batch(product, "b2")),
                     100 + 7 - 30);
    ap_product_free(product);
}

static void test_add_batch_with_different_fields_is_batch_exists(void **state)
{
    (void)state;
    ap_product_t *product = new_product("RED-CHAIR");
    assert_int_equal(ap_product_add_batch(product, "b1", 100, true, TOMORROW), AP_OK);
    add_warehouse_batch(product, "b2", 50);
    mark_t before = mark(product);

    assert_int_equal(ap_product_add_batch(product, "b1", 99, true, TOMORROW),
                     AP_ERR_BATCH_EXISTS);
    assert_int_equal(ap_product_add_batch(product, "b1", 100, true, LATER), AP_ERR_BATCH_EXISTS);
    assert_int_equal(ap_product_add_batch(product, "b1", 100, false, 0), AP_ERR_BATCH_EXISTS);
    assert_int_equal(ap_product_add_batch(product, "b2", 50, true, TODAY), AP_ERR_BATCH_EXISTS);
    assert_int_equal(ap_product_add_batch(product, "b2", 51, false, 0), AP_ERR_BATCH_EXISTS);

    assert_nothing_recorded_since(product, before);
    assert_int_equal(product->nbatches, 2);
    assert_int_equal(batch(product, "b1")->purchased_qty, 100);
    assert_int_equal(batch(product, "b1")->eta, TOMORROW);
    assert_int_equal(batch(product, "b2")->purchased_qty, 50);
    assert_false(batch(product, "b2")->has_eta);
    ap_product_free(product);
}

/* ---------------------------------------------------------------- change_batch_quantity */

static void test_change_batch_quantity_sets_qty_and_records_event(void **state)
{
    (void)state;
    ap_product_t *product = new_product("ADORABLE-SETTEE");
    add_warehouse_batch(product, "other", 5);
    add_warehouse_batch(product, "batch1", 100);
    allocate(product, "o0", 5); /* fills "other" */
    allocate(product, "o1", 20);
    mark_t before = mark(product);

    assert_int_equal(ap_product_change_batch_quantity(product, "batch1", 50), AP_OK);
    assert_int_equal(batch(product, "batch1")->purchased_qty, 50);
    assert_int_equal(available(product, "batch1"), 30);
    assert_lines(product, "batch1", 1, (const char *const[]){"o1"});

    assert_int_equal(product->nevents, before.nevents + 1);
    const ap_msg_t *evt = event(product, before.nevents);
    assert_int_equal(evt->type, AP_EVT_BATCH_QUANTITY_CHANGED);
    assert_string_equal(evt->ref, "batch1");
    assert_string_equal(evt->sku, "ADORABLE-SETTEE");
    assert_int_equal(evt->qty, 50);

    assert_int_equal(product->nchanges, before.nchanges + 1);
    assert_int_equal(change(product, before.nchanges)->kind, AP_CHANGE_SET_QTY);
    assert_int_equal(change(product, before.nchanges)->batch, 1);
    assert_int_equal(product->version_number, before.version + 1);

    /* Raising it works the same way. */
    assert_int_equal(ap_product_change_batch_quantity(product, "batch1", 500), AP_OK);
    assert_int_equal(available(product, "batch1"), 480);
    ap_product_free(product);
}

static void test_change_batch_quantity_deallocates_last_in_first_out(void **state)
{
    (void)state;
    ap_product_t *product = new_product("INDIFFERENT-TABLE");
    add_warehouse_batch(product, "decoy", 1);
    add_warehouse_batch(product, "batch1", 100);
    allocate(product, "decoy-order", 1);
    allocate(product, "a", 20);
    allocate(product, "b", 30);
    allocate(product, "c", 10);
    assert_lines(product, "batch1", 3, (const char *const[]){"a", "b", "c"});
    mark_t before = mark(product);

    /* 45 - 60 = -15: c (10) goes, still -5; b (30) goes, 25 >= 0: a stays. A rule that
     * took the oldest, the largest or the fewest lines would give another answer. */
    assert_int_equal(ap_product_change_batch_quantity(product, "batch1", 45), AP_OK);
    assert_lines(product, "batch1", 1, (const char *const[]){"a"});
    assert_int_equal(available(product, "batch1"), 25);
    assert_int_equal(batch(product, "batch1")->purchased_qty, 45);

    assert_int_equal(product->nevents, before.nevents + 3);
    const ap_msg_t *evt = event(product, before.nevents);
    assert_int_equal(evt->type, AP_EVT_BATCH_QUANTITY_CHANGED);
    assert_string_equal(evt->ref, "batch1");
    assert_string_equal(evt->sku, "INDIFFERENT-TABLE");
    assert_int_equal(evt->qty, 45);
    assert_line_event(event(product, before.nevents + 1), AP_EVT_DEALLOCATED, "c",
                      "INDIFFERENT-TABLE", 10, "batch1");
    assert_line_event(event(product, before.nevents + 2), AP_EVT_DEALLOCATED, "b",
                      "INDIFFERENT-TABLE", 30, "batch1");

    assert_int_equal(product->nchanges, before.nchanges + 3);
    assert_int_equal(change(product, before.nchanges)->kind, AP_CHANGE_SET_QTY);
    assert_int_equal(change(product, before.nchanges)->batch, 1);
    assert_line_change(change(product, before.nchanges + 1), AP_CHANGE_REMOVE_LINE, 1, "c",
                       "INDIFFERENT-TABLE", 10);
    assert_line_change(change(product, before.nchanges + 2), AP_CHANGE_REMOVE_LINE, 1, "b",
                       "INDIFFERENT-TABLE", 30);

    assert_int_equal(product->version_number, before.version + 1);
    /* The other batch is untouched. */
    assert_lines(product, "decoy", 1, (const char *const[]){"decoy-order"});
    ap_product_free(product);
}

static void test_change_batch_quantity_stops_when_available_is_not_negative(void **state)
{
    (void)state;
    ap_product_t *product = new_product("INDIFFERENT-TABLE");
    add_warehouse_batch(product, "batch1", 50);
    allocate(product, "order1", 20);
    allocate(product, "order2", 20);

    /* Exactly enough: available 0 is not negative, nothing is taken back. */
    mark_t before = mark(product);
    assert_int_equal(ap_product_change_batch_quantity(product, "batch1", 40), AP_OK);
    assert_int_equal(product->nevents, before.nevents + 1);
    assert_int_equal(event(product, before.nevents)->type, AP_EVT_BATCH_QUANTITY_CHANGED);
    assert_lines(product, "batch1", 2, (const char *const[]){"order1", "order2"});
    assert_int_equal(available(product, "batch1"), 0);

    /* The book's case: 25 - 40 = -15; order2 goes, 5 left. */
    before = mark(product);
    assert_int_equal(ap_product_change_batch_quantity(product, "batch1", 25), AP_OK);
    assert_int_equal(product->nevents, before.nevents + 2);
    assert_line_event(event(product, before.nevents + 1), AP_EVT_DEALLOCATED, "order2",
                      "INDIFFERENT-TABLE", 20, "batch1");
    assert_lines(product, "batch1", 1, (const char *const[]){"order1"});
    assert_int_equal(available(product, "batch1"), 5);
    ap_product_free(product);
}

static void test_change_batch_quantity_to_zero_deallocates_everything(void **state)
{
    (void)state;
    ap_product_t *product = new_product("FOLDING-CHAIR");
    add_warehouse_batch(product, "batch1", 30);
    allocate(product, "o1", 10);
    allocate(product, "o2", 10);
    allocate(product, "o3", 10);
    mark_t before = mark(product);

    assert_int_equal(ap_product_change_batch_quantity(product, "batch1", 0), AP_OK);
    assert_int_equal(batch(product, "batch1")->nlines, 0);
    assert_int_equal(available(product, "batch1"), 0);
    assert_int_equal(product->nevents, before.nevents + 4);
    assert_int_equal(event(product, before.nevents)->type, AP_EVT_BATCH_QUANTITY_CHANGED);
    assert_string_equal(event(product, before.nevents + 1)->orderid, "o3");
    assert_string_equal(event(product, before.nevents + 2)->orderid, "o2");
    assert_string_equal(event(product, before.nevents + 3)->orderid, "o1");
    for (size_t i = 1; i <= 3; i++)
        assert_int_equal(event(product, before.nevents + i)->type, AP_EVT_DEALLOCATED);
    assert_int_equal(product->version_number, before.version + 1);

    /* A line taken back is no longer "already allocated": it can be allocated again. */
    assert_int_equal(ap_product_change_batch_quantity(product, "batch1", 10), AP_OK);
    assert_string_equal(allocate(product, "o1", 10), "batch1");
    ap_product_free(product);
}

static void test_change_batch_quantity_unknown_batch(void **state)
{
    (void)state;
    ap_product_t *product = new_product("FOLDING-CHAIR");
    add_warehouse_batch(product, "batch1", 30);
    allocate(product, "o1", 10);
    mark_t before = mark(product);
    assert_int_equal(ap_product_change_batch_quantity(product, "batch2", 5), AP_ERR_UNKNOWN_BATCH);
    assert_nothing_recorded_since(product, before);
    assert_int_equal(batch(product, "batch1")->purchased_qty, 30);
    assert_int_equal(batch(product, "batch1")->nlines, 1);
    ap_product_free(product);
}

/* ---------------------------------------------------------------- storage helpers */

static void test_restore_records_nothing(void **state)
{
    (void)state;
    ap_product_t *product = ap_product_restore("OLD-DRESSER", 7);
    assert_non_null(product);
    assert_string_equal(product->sku, "OLD-DRESSER");
    assert_int_equal(product->version_number, 7);
    assert_int_equal(product->stored_version, 7);
    assert_false(product->is_new);

    ap_batch_t *b = NULL;
    assert_int_equal(ap_product_restore_batch(product, "b-ship", 100, true, TOMORROW, 0, &b),
                     AP_OK);
    assert_non_null(b);
    assert_string_equal(b->ref, "b-ship");
    assert_string_equal(b->sku, "OLD-DRESSER");
    assert_int_equal(ap_product_restore_line(b, "o1", 30), AP_OK);
    assert_int_equal(ap_product_restore_line(b, "o2", 20), AP_OK);
    assert_int_equal(ap_product_restore_batch(product, "b-ware", 10, false, 0, 0, &b), AP_OK);
    ap_product_mark_complete(product);

    assert_int_equal(product->nevents, 0);
    assert_int_equal(product->nchanges, 0);
    assert_int_equal(product->version_number, 7);
    assert_int_equal(product->nbatches, 2);
    assert_int_equal(available(product, "b-ship"), 50);
    assert_lines(product, "b-ship", 2, (const char *const[]){"o1", "o2"});
    assert_string_equal(batch(product, "b-ship")->sku, "OLD-DRESSER");

    /* Restored lines count as allocated, in their order. */
    allocate(product, "o1", 30);
    assert_int_equal(product->nevents, 0);
    assert_int_equal(ap_product_change_batch_quantity(product, "b-ship", 40), AP_OK);
    assert_lines(product, "b-ship", 1, (const char *const[]){"o1"});
    assert_string_equal(event(product, 1)->orderid, "o2");
    assert_int_equal(product->version_number, 8);
    ap_product_free(product);
}

static void test_clear_events_and_mark_stored(void **state)
{
    (void)state;
    ap_product_t *product = new_product("NEW-RUG");
    add_warehouse_batch(product, "b1", 10);
    allocate(product, "o1", 1);
    assert_int_equal(product->nevents, 2);
    assert_int_equal(product->nchanges, 2);

    ap_product_clear_events(product);
    assert_int_equal(product->nevents, 0);
    assert_int_equal(product->nchanges, 2);

    ap_product_mark_stored(product);
    assert_int_equal(product->nchanges, 0);
    assert_int_equal(product->stored_version, 2);
    assert_int_equal(product->version_number, 2);
    assert_false(product->is_new);

    /* Recording carries on afterwards. */
    allocate(product, "o2", 1);
    assert_int_equal(product->nevents, 1);
    assert_int_equal(product->nchanges, 1);
    assert_int_equal(product->version_number, 3);
    assert_int_equal(product->stored_version, 2);
    ap_product_free(product);
}

static void test_clone_deep_copies(void **state)
{
    (void)state;
    ap_product_t *product = new_product("CLONED-BENCH");
    add_warehouse_batch(product, "b1", 10);
    add_shipment(product, "b2", 20, TOMORROW);
    allocate(product, "o1", 4);
    allocate(product, "o2", 8);

    ap_product_t *copy = ap_product_clone(product);
    assert_non_null(copy);
    assert_string_equal(copy->sku, "CLONED-BENCH");
    assert_int_equal(copy->version_number, product->version_number);
    assert_int_equal(copy->stored_version, product->stored_version);
    assert_int_equal(copy->is_new, product->is_new);
    assert_int_equal(copy->nbatches, 2);
    assert_int_equal(copy->nevents, 4);
    assert_int_equal(copy->nchanges, 4);
    assert_true(copy->batches != product->batches);
    assert_true(copy->events != product->events);
    assert_true(copy->changes != product->changes);
    assert_true(copy->batches[0].lines != product->batches[0].lines);
    assert_int_equal(copy->events[3].type, AP_EVT_ALLOCATED);
    assert_string_equal(copy->events[3].batchref, "b2");
    assert_int_equal(copy->changes[3].kind, AP_CHANGE_ADD_LINE);

    /* Changing the original leaves the copy alone, and the other way round. */
    allocate(product, "o3", 6);
    assert_int_equal(ap_product_change_batch_quantity(product, "b2", 0), AP_OK);
    assert_int_equal(available(copy, "b1"), 6);
    assert_int_equal(available(copy, "b2"), 12);
    assert_int_equal(copy->nevents, 4);
    assert_int_equal(copy->nchanges, 4);
    assert_int_equal(copy->version_number, 4);

    allocate(copy, "o9", 1);
    assert_int_equal(available(product, "b1"), 0);
    ap_product_free(product);

    /* The copy outlives the original (the sanitizer checks no memory is shared). */
    assert_lines(copy, "b1", 2, (const char *const[]){"o1", "o9"});
    assert_lines(copy, "b2", 1, (const char *const[]){"o2"});
    assert_int_equal(copy->nevents, 5);
    assert_int_equal(copy->version_number, 5);
    ap_product_free(copy);
}

static void test_find_batch(void **state)
{
    (void)state;
    ap_product_t *product = new_product("FINDABLE-TABLE");
    add_warehouse_batch(product, "b1", 1);
    add_warehouse_batch(product, "b2", 2);
    assert_int_equal(batch(product, "b2")->purchased_qty, 2);
    assert_int_equal(batch(product, "b1")->purchased_qty, 1);
    assert_null(ap_product_find_batch(product, "b3"));
    assert_null(ap_product_find_batch(product, "b"));
    assert_null(ap_product_find_batch(product, ""));
    ap_product_free(product);
}

/* ---------------------------------------------------------------- how a batch holds its lines */

/* A unique orderid for line i, 6 to 255 bytes long so the arena sees every length. */
static void long_orderid(char out[AP_STR_SIZE], size_t i)
{
    int n = snprintf(out, AP_STR_SIZE, "o%zu-", i);
    assert_true(n > 0 && n < 8);
    size_t len = 6 + (i * 7919) % (AP_STR_MAX - 5);
    memset(out + n, 'a' + (int)(i % 26), len - (size_t)n);
    out[len] = '\0';
}

static void test_arena_survives_many_appends(void **state)
{
    (void)state;
    enum { N = 10000 };
    ap_product_t *product = new_product("MANY-LINES");
    add_warehouse_batch(product, "b1", 3 * N);
    char orderid[AP_STR_SIZE];
    int64_t total = 0;
    size_t text = 0;
    for (size_t i = 0; i < N; i++) {
        long_orderid(orderid, i);
        assert_string_equal(allocate(product, orderid, 1 + (int64_t)(i % 3)), "b1");
        total += 1 + (int64_t)(i % 3);
        text += strlen(orderid) + 1;
        /* Keep only the lines' memory growing, not the records'. */
        ap_product_clear_events(product);
        ap_product_mark_stored(product);
    }

    const ap_batch_t *b = batch(product, "b1");
    assert_int_equal(b->nlines, N);
    assert_int_equal(b->text_len, text);
    assert_int_equal(ap_batch_allocated_qty(b), total);
    assert_int_equal(ap_batch_available_qty(b), 3 * N - total);
    for (size_t i = 0; i < N; i++) {
        long_orderid(orderid, i);
        assert_string_equal(ap_batch_line_orderid(b, i), orderid);
        assert_int_equal(b->lines[i].orderid_len, strlen(orderid));
        assert_int_equal(b->lines[i].qty, 1 + (int64_t)(i % 3));
    }

    /* Every line is found again, first and last included. */
    long_orderid(orderid, 0);
    ap_order_line_t first = make_line(orderid, "MANY-LINES", 1);
    long_orderid(orderid, N - 1);
    ap_order_line_t last = make_line(orderid, "MANY-LINES", 1 + (N - 1) % 3);
    assert_true(ap_batch_has_line(b, &first));
    assert_true(ap_batch_has_line(b, &last));
    ap_product_free(product);
}

static void test_lifo_deallocation_gives_the_arena_back(void **state)
{
    (void)state;
    char big[AP_STR_SIZE];
    memset(big, 'L', AP_STR_MAX);
    big[AP_STR_MAX] = '\0';
    ap_product_t *product = new_product("LIFO-SHELF");
    add_warehouse_batch(product, "b1", 30);
    allocate(product, "first", 10);
    size_t after_first = batch(product, "b1")->text_len;
    assert_int_equal(after_first, strlen("first") + 1);
    allocate(product, big, 10);
    allocate(product, "o3", 10);

    mark_t before = mark(product);
    assert_int_equal(ap_product_change_batch_quantity(product, "b1", 10), AP_OK);
    const ap_batch_t *b = batch(product, "b1");
    assert_int_equal(b->nlines, 1);
    assert_int_equal(b->text_len, after_first);
    assert_int_equal(ap_batch_allocated_qty(b), 10);
    /* The lines taken back were read before their bytes were given back. */
    assert_line_event(event(product, before.nevents + 1), AP_EVT_DEALLOCATED, "o3", "LIFO-SHELF",
                      10, "b1");
    assert_line_event(event(product, before.nevents + 2), AP_EVT_DEALLOCATED, big, "LIFO-SHELF",
                      10, "b1");
    assert_line_change(change(product, before.nchanges + 1), AP_CHANGE_REMOVE_LINE, 0, "o3",
                       "LIFO-SHELF", 10);
    assert_line_change(change(product, before.nchanges + 2), AP_CHANGE_REMOVE_LINE, 0, big,
                       "LIFO-SHELF", 10);

    /* New lines reuse the bytes: nothing of the old orderids shows through. */
    assert_int_equal(ap_product_change_batch_quantity(product, "b1", 30), AP_OK);
    allocate(product, "x", 5);
    allocate(product, "o3", 5);
    allocate(product, big, 1);
    assert_lines(product, "b1", 4, (const char *const[]){"first", "x", "o3", big});
    b = batch(product, "b1");
    assert_int_equal(b->text_len, after_first + 2 + 3 + AP_STR_MAX + 1);
    assert_int_equal(ap_batch_allocated_qty(b), 21);
    ap_order_line_t old_big = make_line(big, "LIFO-SHELF", 10);
    assert_false(ap_batch_has_line(b, &old_big));
    ap_product_free(product);
}

static void test_clone_has_its_own_arena(void **state)
{
    (void)state;
    ap_product_t *product = new_product("ARENA-CLONE");
    add_warehouse_batch(product, "b1", 100);
    allocate(product, "o1", 10);
    allocate(product, "o2-longer", 20);
    allocate(product, "o3", 30);

    ap_product_t *copy = ap_product_clone(product);
    assert_non_null(copy);
    assert_true(copy->batches[0].text != product->batches[0].text);
    assert_int_equal(copy->batches[0].text_len, product->batches[0].text_len);
    assert_int_equal(ap_batch_allocated_qty(&copy->batches[0]), 60);

    /* The copy rewrites the bytes of o2 and o3 in its arena; the original keeps them. */
    assert_int_equal(ap_product_change_batch_quantity(copy, "b1", 10), AP_OK);
    assert_int_equal(ap_product_change_batch_quantity(copy, "b1", 100), AP_OK);
    allocate(copy, "zzzzzzzzzzzz", 1);
    assert_lines(copy, "b1", 2, (const char *const[]){"o1", "zzzzzzzzzzzz"});
    assert_int_equal(ap_batch_allocated_qty(batch(copy, "b1")), 11);

    assert_lines(product, "b1", 3, (const char *const[]){"o1", "o2-longer", "o3"});
    assert_int_equal(ap_batch_allocated_qty(batch(product, "b1")), 60);
    ap_order_line_t o2 = make_line("o2-longer", "ARENA-CLONE", 20);
    assert_true(ap_batch_has_line(batch(product, "b1"), &o2));
    assert_false(ap_batch_has_line(batch(copy, "b1"), &o2));

    /* And the other way round, with the original outliving nothing of the copy. */
    allocate(product, "o4", 5);
    ap_product_free(product);
    assert_lines(copy, "b1", 2, (const char *const[]){"o1", "zzzzzzzzzzzz"});
    ap_product_free(copy);
}

static void test_has_line_compares_orderid_qty_and_sku(void **state)
{
    (void)state;
    ap_product_t *product = new_product("HAS-LINE-LAMP");
    add_warehouse_batch(product, "b1", 100);
    allocate(product, "o12", 5);
    const ap_batch_t *b = batch(product, "b1");

    ap_order_line_t same = make_line("o12", "HAS-LINE-LAMP", 5);
    ap_order_line_t other_qty = make_line("o12", "HAS-LINE-LAMP", 6);
    ap_order_line_t other_sku = make_line("o12", "HAS-LINE-DESK", 5);
    ap_order_line_t prefix = make_line("o1", "HAS-LINE-LAMP", 5);
    ap_order_line_t longer = make_line("o123", "HAS-LINE-LAMP", 5);
    assert_true(ap_batch_has_line(b, &same));
    assert_false(ap_batch_has_line(b, &other_qty));
    assert_false(ap_batch_has_line(b, &other_sku));
    assert_false(ap_batch_has_line(b, &prefix));
    assert_false(ap_batch_has_line(b, &longer));

    /* Allocating the same orderid with another qty is another line, found as such. */
    assert_string_equal(allocate(product, "o12", 6), "b1");
    b = batch(product, "b1");
    assert_int_equal(b->nlines, 2);
    assert_true(ap_batch_has_line(b, &same));
    assert_true(ap_batch_has_line(b, &other_qty));
    ap_product_free(product);
}

static void test_restore_line_checks_the_orderid(void **state)
{
    (void)state;
    ap_product_t *product = ap_product_restore("RESTORED-RUG", 1);
    assert_non_null(product);
    ap_batch_t *b = NULL;
    assert_int_equal(ap_product_restore_batch(product, "b1", 1000, false, 0, 0, &b), AP_OK);

    char longest[AP_STR_MAX + 1], longer[AP_STR_MAX + 2];
    memset(longest, 'k', AP_STR_MAX);
    longest[AP_STR_MAX] = '\0';
    memset(longer, 'l', AP_STR_MAX + 1);
    longer[AP_STR_MAX + 1] = '\0';
    assert_int_equal(ap_product_restore_line(b, longer, 1), AP_ERR_INVALID_COMMAND);
    assert_int_equal(b->nlines, 0);
    assert_int_equal(b->text_len, 0);
    assert_int_equal(ap_batch_allocated_qty(b), 0);
    assert_int_equal(ap_product_restore_line(b, longest, 2), AP_OK);
    assert_int_equal(ap_product_restore_line(b, "", 3), AP_OK);

    /* An orderid read from the batch itself stays valid while the arena grows under it. */
    for (int i = 0; i < 100; i++)
        assert_int_equal(ap_product_restore_line(b, ap_batch_line_orderid(b, 0), 1), AP_OK);
    assert_int_equal(b->nlines, 102);
    assert_string_equal(ap_batch_line_orderid(b, 0), longest);
    assert_string_equal(ap_batch_line_orderid(b, 1), "");
    for (size_t i = 2; i < b->nlines; i++)
        assert_string_equal(ap_batch_line_orderid(b, i), longest);
    assert_int_equal(ap_batch_allocated_qty(b), 105);
    assert_int_equal(product->nevents, 0);
    assert_int_equal(product->nchanges, 0);
    ap_product_free(product);
}

/* A product about to be cached gives back the room reserved for events and changes, but
 * never drops events or changes still pending. */
static void test_trim_releases_only_unused_room(void **state)
{
    (void)state;
    ap_product_t *product = new_product("TRIMMED-LAMP");
    assert_int_equal(ap_product_add_batch(product, "trim-b1", 10, false, 0), AP_OK);
    ap_order_line_t line = make_line("o1", "TRIMMED-LAMP", 1);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_OK);

    size_t before = ap_product_footprint(product);
    ap_product_trim(product); /* two events and two changes pending: nothing to give back */
    assert_int_equal(ap_product_footprint(product), before);
    assert_int_equal(product->nevents, 2);
    assert_int_equal(product->nchanges, 2);

    ap_product_clear_events(product);
    ap_product_mark_stored(product);
    ap_product_trim(product);
    assert_null(product->events);
    assert_null(product->changes);
    assert_int_equal(product->events_cap + product->changes_cap, 0);
    assert_true(ap_product_footprint(product) + 2 * sizeof(ap_msg_t) <= before);

    /* Still usable: the next change reserves room again. */
    line = make_line("o2", "TRIMMED-LAMP", 1);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_OK);
    assert_int_equal(product->nevents, 1);
    assert_int_equal(ap_batch_allocated_qty(ap_product_find_batch(product, "trim-b1")), 2);
    ap_product_free(product);
}

static void test_footprint_grows_with_lines(void **state)
{
    (void)state;
    enum { N = 1000 };
    ap_product_t *product = ap_product_restore("HEAVY-SOFA", 1);
    assert_non_null(product);
    size_t empty = ap_product_footprint(product);
    assert_true(empty >= sizeof *product);

    ap_batch_t *b = NULL;
    assert_int_equal(ap_product_restore_batch(product, "b1", N, false, 0, 0, &b), AP_OK);
    size_t one_batch = ap_product_footprint(product);
    assert_true(one_batch >= empty + sizeof *b);

    char orderid[16];
    for (size_t i = 0; i < N; i++) {
        snprintf(orderid, sizeof orderid, "order-%04zu", i); /* 10 bytes + NUL */
        assert_int_equal(ap_product_restore_line(b, orderid, 1), AP_OK);
    }
    ap_product_mark_complete(product);
    size_t full = ap_product_footprint(product);
    size_t per_line = sizeof(ap_batch_line_t) + 11;
    /* At least what the lines need, at most twice that (geometric growth), and nowhere near
     * a whole ap_order_line_t per line. */
    assert_true(full >= one_batch + N * per_line);
    assert_true(full <= one_batch + 2 * N * per_line + 64);
    assert_true(full - one_batch < N * sizeof(ap_order_line_t) / 10);

    /* Taking one line back reserves room for one line's records, not for every line's. */
    assert_int_equal(ap_product_change_batch_quantity(product, "b1", N - 1), AP_OK);
    assert_int_equal(product->batches[0].nlines, N - 1);
    size_t taken_back = ap_product_footprint(product);
    assert_true(taken_back - full < 8 * (sizeof(ap_msg_t) + sizeof(ap_change_t)));

    /* Recording counts too: the allocations add events and changes. */
    ap_order_line_t line = make_line("one-more", "HEAVY-SOFA", 1);
    assert_int_equal(ap_product_change_batch_quantity(product, "b1", N), AP_OK);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_OK);
    assert_int_equal(product->nevents, 4);
    assert_true(ap_product_footprint(product) >=
                full + 4 * (sizeof(ap_msg_t) + sizeof(ap_change_t)));

    /* A clone holds exactly what it needs, so never more. */
    ap_product_t *copy = ap_product_clone(product);
    assert_non_null(copy);
    assert_true(ap_product_footprint(copy) <= ap_product_footprint(product));
    assert_int_equal(ap_product_footprint(copy),
                     sizeof *copy + sizeof(ap_batch_t) + N * sizeof(ap_batch_line_t) +
                         copy->batches[0].text_len +
                         4 * (sizeof(ap_msg_t) + sizeof(ap_change_t)));
    ap_product_free(copy);
    ap_product_free(product);
}

/* ---------------------------------------------------------------- partial products */

/* A product restored without its lines refuses what it cannot decide, changing nothing. */
static void test_a_partial_product_asks_for_the_lines_it_needs(void **state)
{
    (void)state;
    ap_product_t *product = ap_product_restore("PARTIAL-BED", 3);
    ap_batch_t *b = NULL;
    assert_int_equal(ap_product_restore_batch(product, "pb1", 10, false, 0, 6, &b), AP_OK);
    assert_int_equal(ap_batch_available_qty(b), 4);
    assert_int_equal(ap_batch_unknown_qty(b), 6);

    ap_order_line_t line = make_line("o1", "PARTIAL-BED", 1);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_ERR_NEED_LINES);
    assert_int_equal(ap_product_change_batch_quantity(product, "pb1", 5), AP_ERR_NEED_LINES);
    assert_int_equal(ap_product_change_batch_quantity(product, "pb1", 8), AP_OK); /* no one leaves */
    assert_int_equal(product->nevents, 1);
    assert_int_equal(product->version_number, 4);

    /* The order's lines from storage: none. Now it can decide. */
    assert_int_equal(ap_product_restore_order(product, "o1"), AP_OK);
    assert_true(ap_product_knows_order(product, "o1"));
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_OK);
    assert_int_equal(ap_batch_allocated_qty(b), 7);

    /* Older lines, newest first: o1 is in memory, the rest come in front of it. */
    assert_int_equal(ap_product_restore_older_line(product, b, 20, "x2", 2), AP_OK);
    assert_int_equal(ap_product_restore_older_line(product, b, 20, "x2", 2), AP_ERR_CONFLICT);
    assert_int_equal(ap_product_restore_older_line(product, b, 10, "x1", 5), AP_ERR_CONFLICT);
    assert_int_equal(ap_product_restore_older_line(product, b, 10, "x1", 4), AP_OK);
    assert_int_equal(ap_batch_unknown_qty(b), 0);
    assert_lines(product, "pb1", 3, (const char *const[]){"x1", "x2", "o1"});
    assert_int_equal(ap_product_stored_newest(product, 0), 2); /* o1 is not stored yet */
    assert_int_equal(ap_product_change_batch_quantity(product, "pb1", 4), AP_OK);
    assert_lines(product, "pb1", 1, (const char *const[]){"x1"});
    assert_int_equal(ap_product_stored_newest(product, 0), 2); /* x2 is, until written */
    assert_true(ap_product_removal_pending(product, "x2"));

    /* Forgetting the lines keeps what the batch has allocated. */
    ap_product_forget_lines(product);
    assert_int_equal(b->nlines, 0);
    assert_int_equal(ap_batch_allocated_qty(b), 4);
    assert_false(ap_product_knows_order(product, "o1"));
    ap_product_free(product);
}

/* A repository that keeps products whole applies the recorded changes, or refuses them. */
static void test_apply_changes_to_a_whole_product(void **state)
{
    (void)state;
    ap_product_t *whole = new_product("WHOLE-DESK");
    ap_product_mark_stored(whole);
    ap_product_clear_events(whole);
    ap_product_t *changed = ap_product_clone(whole);
    assert_int_equal(ap_product_add_batch(changed, "wd1", 10, false, 0), AP_OK);
    ap_order_line_t line = make_line("o1", "WHOLE-DESK", 4);
    assert_int_equal(ap_product_allocate(changed, &line, NULL), AP_OK);
    int64_t ids = 0;
    assert_int_equal(ap_product_apply_changes(whole, changed, &ids), AP_OK);
    assert_int_equal(whole->version_number, 2);
    assert_int_equal(ids, 1);
    assert_int_equal(whole->batches[0].lines[0].id, 1);
    assert_int_equal(ap_batch_allocated_qty(&whole->batches[0]), 4);
    /* The same changes again: the stored version moved on. */
    assert_int_equal(ap_product_apply_changes(whole, changed, &ids), AP_ERR_CONFLICT);
    ap_product_free(changed);
    ap_product_free(whole);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_line_init_and_equality),
        cmocka_unit_test(test_new_product_is_empty_and_new),
        cmocka_unit_test(test_allocating_to_a_batch_reduces_the_available_quantity),
        cmocka_unit_test(test_can_allocate_if_available_greater_than_required),
        cmocka_unit_test(test_cannot_allocate_if_available_smaller_than_required),
        cmocka_unit_test(test_can_allocate_if_available_equal_to_required),
        cmocka_unit_test(test_cannot_allocate_if_skus_do_not_match),
        cmocka_unit_test(test_allocation_is_idempotent),
        cmocka_unit_test(test_allocated_line_is_not_allocated_again_elsewhere),
        cmocka_unit_test(test_same_order_with_another_qty_is_another_line),
        cmocka_unit_test(test_batch_has_line),
        cmocka_unit_test(test_prefers_warehouse_batches_to_shipments),
        cmocka_unit_test(test_prefers_earlier_batches),
        cmocka_unit_test(test_prefers_earlier_batches_before_1970),
        cmocka_unit_test(test_ties_go_to_the_batch_created_first),
        cmocka_unit_test(test_lines_are_never_split),
        cmocka_unit_test(test_returns_allocated_batch_ref),
        cmocka_unit_test(test_records_allocated_event_and_change),
        cmocka_unit_test(test_records_out_of_stock_event_if_cannot_allocate),
        cmocka_unit_test(test_out_of_stock_with_no_batches_at_all),
        cmocka_unit_test(test_increments_version_number),
        cmocka_unit_test(test_version_moves_once_per_accepted_change_only),
        cmocka_unit_test(test_add_batch_records_batch_created_and_change),
        cmocka_unit_test(test_add_batch_with_zero_qty),
        cmocka_unit_test(test_add_batch_identical_is_a_no_op),
        cmocka_unit_test(test_add_batch_with_different_fields_is_batch_exists),
        cmocka_unit_test(test_change_batch_quantity_sets_qty_and_records_event),
        cmocka_unit_test(test_change_batch_quantity_deallocates_last_in_first_out),
        cmocka_unit_test(test_change_batch_quantity_stops_when_available_is_not_negative),
        cmocka_unit_test(test_change_batch_quantity_to_zero_deallocates_everything),
        cmocka_unit_test(test_change_batch_quantity_unknown_batch),
        cmocka_unit_test(test_restore_records_nothing),
        cmocka_unit_test(test_clear_events_and_mark_stored),
        cmocka_unit_test(test_clone_deep_copies),
        cmocka_unit_test(test_find_batch),
        cmocka_unit_test(test_arena_survives_many_appends),
        cmocka_unit_test(test_lifo_deallocation_gives_the_arena_back),
        cmocka_unit_test(test_clone_has_its_own_arena),
        cmocka_unit_test(test_has_line_compares_orderid_qty_and_sku),
        cmocka_unit_test(test_restore_line_checks_the_orderid),
        cmocka_unit_test(test_footprint_grows_with_lines),
        cmocka_unit_test(test_a_partial_product_asks_for_the_lines_it_needs),
        cmocka_unit_test(test_apply_changes_to_a_whole_product),
        cmocka_unit_test(test_trim_releases_only_unused_room),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
