/*
 * test_uow.c - the unit of work's bookkeeping (service/uow.c) over the fake backend: the
 * transaction's cache, and committed products kept between transactions, which storage must
 * confirm before they are used, which a rollback must never leave changed, and which stay
 * under their memory limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ap/model.h"
#include "ap/ports.h"
#include "ap/product_cache.h"
#include "fakes.h"

/* ---------------------------------------------------------------- helpers */

static int setup(void **state)
{
    ap_uow_t *uow = ap_fake_uow_new();
    assert_non_null(uow);
    assert_int_equal(ap_uow_keep_committed(uow, 1 << 20), AP_OK);
    *state = uow;
    return 0;
}

static int teardown(void **state)
{
    ap_uow_free(*state);
    return 0;
}

/* Commits a new product with one batch of `qty` in its own transaction. */
static void create(ap_uow_t *uow, const char *sku, const char *ref, int64_t qty)
{
    ap_product_t *product = ap_product_new(sku);
    assert_non_null(product);
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_product_add_batch(product, ref, qty, false, 0), AP_OK);
    assert_int_equal(ap_uow_add(uow, product), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_forget(uow);
}

static ap_err_t ignore_event(void *ctx, const ap_msg_t *event)
{
    (void)ctx;
    (void)event;
    return AP_OK;
}

/* Allocates in its own scope (a transaction when none is open), as a handler would. */
static void allocate(ap_uow_t *uow, const char *orderid, const char *sku, int64_t qty)
{
    ap_product_t *product;
    ap_order_line_t line;
    assert_int_equal(ap_order_line_init(&line, orderid, sku, qty), AP_OK);
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, sku, &product), AP_OK);
    assert_int_equal(ap_uow_load_order(uow, product, orderid), AP_OK);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(ap_uow_collect_new_events(uow, ignore_event, NULL), AP_OK);
}

/* The product a new transaction sees, and whether storage had to load it whole. */
static int64_t version_seen(ap_uow_t *uow, const char *sku, bool *loaded)
{
    size_t before = ap_fake_uow_loads(uow);
    ap_product_t *product;
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, sku, &product), AP_OK);
    int64_t version = product->version_number;
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(ap_uow_collect_new_events(uow, ignore_event, NULL), AP_OK);
    *loaded = ap_fake_uow_loads(uow) > before;
    return version;
}

/* ---------------------------------------------------------------- tests */

static void test_a_committed_product_is_reused_when_storage_confirms_it(void **state)
{
    ap_uow_t *uow = *state;
    bool loaded;
    create(uow, "KEPT-LAMP", "b1", 10);
    assert_int_equal(version_seen(uow, "KEPT-LAMP", &loaded), 1);
    assert_true(loaded); /* the creating transaction forgot it (ap_uow_forget) */

    /* From now on the product comes back from the kept copy, with what each commit did. */
    for (int i = 0; i < 3; i++) {
        char orderid[16];
        snprintf(orderid, sizeof orderid, "o%d", i);
        size_t before = ap_fake_uow_loads(uow);
        allocate(uow, orderid, "KEPT-LAMP", 1);
        assert_int_equal(ap_fake_uow_loads(uow), before);
    }
    assert_int_equal(version_seen(uow, "KEPT-LAMP", &loaded), 4);
    assert_false(loaded);
    const ap_batch_t *batch = ap_product_find_batch(ap_fake_uow_stored(uow, "KEPT-LAMP"), "b1");
    assert_int_equal(ap_batch_available_qty(batch), 7);
}

static void test_a_product_another_process_changed_is_loaded_again(void **state)
{
    ap_uow_t *uow = *state;
    bool loaded;
    create(uow, "SHARED-SOFA", "b1", 10);
    allocate(uow, "o1", "SHARED-SOFA", 2); /* loads it, then keeps it at version 2 */

    /* Someone else adds a batch: version 3 in storage, our copy says 2. */
    ap_product_t *theirs = ap_product_clone(ap_fake_uow_stored(uow, "SHARED-SOFA"));
    assert_non_null(theirs);
    assert_int_equal(ap_product_add_batch(theirs, "b2", 5, false, 0), AP_OK);
    assert_int_equal(ap_fake_uow_store(uow, theirs), AP_OK);

    ap_product_t *product;
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    size_t before = ap_fake_uow_loads(uow);
    assert_int_equal(ap_uow_get(uow, "SHARED-SOFA", &product), AP_OK);
    assert_int_equal(ap_fake_uow_loads(uow), before + 1);
    assert_int_equal(product->version_number, 3);
    assert_non_null(ap_product_find_batch(product, "b2"));
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(ap_uow_collect_new_events(uow, ignore_event, NULL), AP_OK);
    assert_int_equal(version_seen(uow, "SHARED-SOFA", &loaded), 3);
    assert_false(loaded);
}

static void test_a_rolled_back_transaction_leaves_no_change_behind(void **state)
{
    ap_uow_t *uow = *state;
    bool loaded;
    create(uow, "FICKLE-CHAIR", "b1", 10);
    allocate(uow, "o1", "FICKLE-CHAIR", 1); /* kept at version 2 */

    /* A batch transaction whose command scope commits, then the whole batch rolls back. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    allocate(uow, "o2", "FICKLE-CHAIR", 5);
    ap_uow_rollback(uow);

    assert_int_equal(version_seen(uow, "FICKLE-CHAIR", &loaded), 2);
    ap_product_t *product;
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, "FICKLE-CHAIR", &product), AP_OK);
    assert_int_equal(ap_batch_available_qty(ap_product_find_batch(product, "b1")), 9);
    ap_uow_rollback(uow);
}

static void test_an_inner_rollback_keeps_what_earlier_scopes_committed(void **state)
{
    ap_uow_t *uow = *state;
    create(uow, "STEADY-DESK", "b1", 10);

    assert_int_equal(ap_uow_begin(uow), AP_OK);
    allocate(uow, "o1", "STEADY-DESK", 1); /* a command scope that commits */
    ap_product_t *product;
    assert_int_equal(ap_uow_begin(uow), AP_OK); /* one that fails */
    assert_int_equal(ap_uow_get(uow, "STEADY-DESK", &product), AP_OK);
    ap_order_line_t line;
    assert_int_equal(ap_order_line_init(&line, "o2", "STEADY-DESK", 3), AP_OK);
    assert_int_equal(ap_uow_load_order(uow, product, "o2"), AP_OK);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_OK);
    ap_uow_rollback(uow);
    assert_int_equal(ap_uow_commit(uow), AP_OK);

    bool loaded;
    assert_int_equal(version_seen(uow, "STEADY-DESK", &loaded), 2);
    assert_int_equal(ap_batch_available_qty(
                         ap_product_find_batch(ap_fake_uow_stored(uow, "STEADY-DESK"), "b1")),
                     9);
}

static void test_prefetch_confirms_kept_products_and_loads_the_rest(void **state)
{
    ap_uow_t *uow = *state;
    create(uow, "P-KEPT", "k1", 10);
    create(uow, "P-STALE", "s1", 10);
    create(uow, "P-COLD", "c1", 10);
    allocate(uow, "o1", "P-KEPT", 1);  /* kept at version 2 */
    allocate(uow, "o1", "P-STALE", 1); /* kept at version 2, then changed elsewhere */
    ap_product_t *theirs = ap_product_clone(ap_fake_uow_stored(uow, "P-STALE"));
    assert_non_null(theirs);
    assert_int_equal(ap_product_add_batch(theirs, "s2", 5, false, 0), AP_OK);
    assert_int_equal(ap_fake_uow_store(uow, theirs), AP_OK);

    const char *skus[] = {"P-KEPT", "P-STALE", "P-COLD", "P-MISSING", "P-KEPT"};
    size_t before = ap_fake_uow_loads(uow);
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    ap_uow_prefetch(uow, skus, NULL, 5, NULL, 0);
    assert_int_equal(ap_fake_uow_loads(uow), before + 2); /* the stale one and the cold one */

    ap_product_t *product;
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(ap_uow_get(uow, skus[i], &product), AP_OK);
        assert_int_equal(product->version_number,
                         ap_fake_uow_stored(uow, skus[i])->version_number);
    }
    assert_int_equal(ap_fake_uow_loads(uow), before + 2); /* nothing more */
    assert_int_equal(ap_uow_get(uow, "P-MISSING", &product), AP_ERR_NOT_FOUND);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    ap_uow_forget(uow);
}

/* A batch's commands by batch ref (ChangeBatchQuantity) are prefetched with the rest when a
 * kept product names their sku: one round trip for the whole batch. */
static void test_prefetch_by_batch_ref_uses_kept_products(void **state)
{
    ap_uow_t *uow = *state;
    create(uow, "BY-SKU", "by-sku-b1", 10);
    create(uow, "BY-REF", "by-ref-b1", 10);
    allocate(uow, "o1", "BY-SKU", 1); /* both kept */
    allocate(uow, "o1", "BY-REF", 1);

    const char *skus[] = {"BY-SKU"}, *refs[] = {"by-ref-b1", "never-seen-ref"};
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    size_t queries = ap_fake_uow_queries(uow);
    ap_uow_prefetch(uow, skus, NULL, 1, refs, 2);
    assert_int_equal(ap_fake_uow_queries(uow), queries + 1);

    ap_product_t *by_sku, *by_ref;
    assert_int_equal(ap_uow_get(uow, "BY-SKU", &by_sku), AP_OK);
    assert_int_equal(ap_uow_get_by_batchref(uow, "by-ref-b1", &by_ref), AP_OK);
    assert_string_equal(by_ref->sku, "BY-REF");
    assert_int_equal(ap_fake_uow_queries(uow), queries + 1); /* nothing more */
    /* A ref nobody knows is left to get_by_batchref, which asks storage. */
    assert_int_equal(ap_uow_get_by_batchref(uow, "never-seen-ref", &by_ref), AP_ERR_NOT_FOUND);
    assert_int_equal(ap_fake_uow_queries(uow), queries + 2);
    ap_uow_rollback(uow);
}

static void test_a_kept_product_is_found_by_batch_ref(void **state)
{
    ap_uow_t *uow = *state;
    create(uow, "REF-TABLE", "ref-b1", 10);
    allocate(uow, "o1", "REF-TABLE", 4);

    size_t before = ap_fake_uow_loads(uow);
    ap_product_t *product;
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get_by_batchref(uow, "ref-b1", &product), AP_OK);
    assert_string_equal(product->sku, "REF-TABLE");
    /* The kept copy knows the batch's allocated quantity, not its lines: the one that must
     * leave comes from storage. */
    assert_int_equal(product->batches[0].nlines, 0);
    assert_int_equal(ap_product_change_batch_quantity(product, "ref-b1", 2), AP_ERR_NEED_LINES);
    assert_int_equal(product->nevents, 0);
    assert_int_equal(ap_uow_load_older_lines(uow, product, "ref-b1"), AP_OK);
    assert_int_equal(ap_product_change_batch_quantity(product, "ref-b1", 2), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(ap_uow_collect_new_events(uow, ignore_event, NULL), AP_OK);
    assert_int_equal(ap_fake_uow_loads(uow), before);

    /* The deallocation is in storage and in the kept copy alike. */
    const ap_batch_t *batch = ap_product_find_batch(ap_fake_uow_stored(uow, "REF-TABLE"), "ref-b1");
    assert_int_equal(batch->nlines, 0);
    bool loaded;
    assert_int_equal(version_seen(uow, "REF-TABLE", &loaded), 3);
    assert_false(loaded);
}

/* Counts the events of a kind a product recorded; the orderids of Deallocated in `orders`. */
static size_t events_of(const ap_product_t *product, ap_msg_type_t type, char (*orders)[16])
{
    size_t n = 0;
    for (size_t i = 0; i < product->nevents; i++) {
        if (product->events[i].type != type)
            continue;
        if (orders) {
            assert_true(strlen(product->events[i].orderid) < 16);
            memcpy(orders[n], product->events[i].orderid, 16);
        }
        n++;
    }
    return n;
}

/* A product's history stays in storage: a load brings its batches and their allocated
 * quantities, and the idempotency check asks storage about the one order it is about. */
static void test_history_stays_in_storage_and_an_old_line_is_found_by_its_order(void **state)
{
    ap_uow_t *uow = *state;
    create(uow, "LONG-RUG", "lr1", 100);
    for (int i = 0; i < 20; i++) {
        char orderid[16];
        snprintf(orderid, sizeof orderid, "o%d", i);
        allocate(uow, orderid, "LONG-RUG", 1);
    }

    ap_product_t *product;
    ap_order_line_t line;
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, "LONG-RUG", &product), AP_OK);
    assert_int_equal(product->batches[0].nlines, 0);
    assert_int_equal(ap_batch_allocated_qty(&product->batches[0]), 20);
    int64_t version = product->version_number;

    /* o3 was allocated long ago: the model cannot tell until storage is asked. */
    assert_int_equal(ap_order_line_init(&line, "o3", "LONG-RUG", 1), AP_OK);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_ERR_NEED_LINES);
    size_t queries = ap_fake_uow_queries(uow);
    assert_int_equal(ap_uow_load_order(uow, product, "o3"), AP_OK);
    assert_int_equal(ap_fake_uow_queries(uow), queries + 1);
    assert_int_equal(product->nfound, 1);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_OK); /* the same line */
    assert_int_equal(product->nevents, 0);
    assert_int_equal(product->version_number, version);

    /* A different qty is a different line; the order is known now, so no more queries. */
    assert_int_equal(ap_order_line_init(&line, "o3", "LONG-RUG", 2), AP_OK);
    assert_int_equal(ap_uow_load_order(uow, product, "o3"), AP_OK);
    assert_int_equal(ap_fake_uow_queries(uow), queries + 1);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_OK);
    assert_int_equal(events_of(product, AP_EVT_ALLOCATED, NULL), 1);
    assert_int_equal(ap_batch_allocated_qty(&product->batches[0]), 22);
    assert_int_equal(product->batches[0].nlines, 1); /* only the new one */
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(ap_uow_collect_new_events(uow, ignore_event, NULL), AP_OK);

    const ap_batch_t *stored = ap_product_find_batch(ap_fake_uow_stored(uow, "LONG-RUG"), "lr1");
    assert_int_equal(stored->nlines, 21);
    assert_int_equal(ap_batch_allocated_qty(stored), 22);
}

/*
 * A decrease on a long history loads only the newest lines, a few round trips' worth, and
 * takes them back newest first. A line an order lookup found earlier that the decrease
 * takes back is gone from what the product knows: allocating it again is not a no-op.
 */
static void test_a_decrease_loads_only_the_newest_lines(void **state)
{
    ap_uow_t *uow = *state;
    enum { N = 200 };
    create(uow, "DEEP-SHELF", "ds1", 1000);
    for (int i = 0; i < N; i++) {
        char orderid[16];
        snprintf(orderid, sizeof orderid, "o%d", i);
        allocate(uow, orderid, "DEEP-SHELF", 1);
    }

    ap_product_t *product;
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, "DEEP-SHELF", &product), AP_OK);
    assert_int_equal(ap_uow_load_order(uow, product, "o180"), AP_OK);
    assert_int_equal(product->nfound, 1);

    /* 30 lines must leave: o199 down to o170, o180 among them. */
    size_t queries = ap_fake_uow_queries(uow);
    ap_err_t err;
    while ((err = ap_product_change_batch_quantity(product, "ds1", N - 30)) == AP_ERR_NEED_LINES)
        assert_int_equal(ap_uow_load_older_lines(uow, product, "ds1"), AP_OK);
    assert_int_equal(err, AP_OK);
    assert_int_equal(ap_fake_uow_queries(uow), queries + 2); /* 16, then 32 more */
    assert_int_equal(product->batches[0].nlines, 48 - 30);
    assert_int_equal(product->nfound, 0); /* o180 was loaded with the newest, then left */
    char left[30][16];
    assert_int_equal(events_of(product, AP_EVT_DEALLOCATED, left), 30);
    for (int i = 0; i < 30; i++) {
        char want[16];
        snprintf(want, sizeof want, "o%d", N - 1 - i);
        assert_string_equal(left[i], want);
    }
    /* o180 left its batch: allocating it again is not a no-op (the batch is full now). */
    ap_order_line_t line;
    assert_int_equal(ap_order_line_init(&line, "o180", "DEEP-SHELF", 1), AP_OK);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_OK);
    assert_int_equal(events_of(product, AP_EVT_OUT_OF_STOCK, NULL), 1);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(ap_uow_collect_new_events(uow, ignore_event, NULL), AP_OK);

    /* Storage agrees: with room again, o180 is allocated anew, as the batch's newest line. */
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, "DEEP-SHELF", &product), AP_OK);
    assert_int_equal(ap_product_change_batch_quantity(product, "ds1", 1000), AP_OK);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(ap_uow_collect_new_events(uow, ignore_event, NULL), AP_OK);
    allocate(uow, "o180", "DEEP-SHELF", 1);
    const ap_batch_t *stored = ap_product_find_batch(ap_fake_uow_stored(uow, "DEEP-SHELF"), "ds1");
    assert_int_equal(stored->nlines, N - 30 + 1);
    assert_string_equal(ap_batch_line_orderid(stored, stored->nlines - 1), "o180");
    assert_int_equal(ap_batch_allocated_qty(stored), N - 30 + 1);
}

/* The same, inside one transaction: the lookup comes after the batch's newest lines are in
 * memory, and a line found twice is kept once. */
/* A product with lines a (2) and b (3) in batch `ref` of 10, handed out in a new transaction
 * with both lines loaded (from storage, as the newest of the batch). */
static ap_product_t *two_lines_loaded(ap_uow_t *uow, const char *sku, const char *ref)
{
    ap_product_t *product;
    create(uow, sku, ref, 10);
    allocate(uow, "a", sku, 2);
    allocate(uow, "b", sku, 3);
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, sku, &product), AP_OK);
    assert_int_equal(ap_uow_load_older_lines(uow, product, ref), AP_OK);
    return product;
}

static void test_an_order_looked_up_after_the_newest_lines_is_not_counted_twice(void **state)
{
    ap_uow_t *uow = *state;
    ap_product_t *product = two_lines_loaded(uow, "TWICE-LAMP", "tl1");
    ap_order_line_t line;
    assert_int_equal(product->batches[0].nlines, 2);
    assert_int_equal(ap_uow_load_order(uow, product, "b"), AP_OK);
    assert_int_equal(product->nfound, 0); /* already among the batch's lines */
    assert_int_equal(ap_product_change_batch_quantity(product, "tl1", 2), AP_OK); /* b leaves */
    assert_int_equal(ap_order_line_init(&line, "b", "TWICE-LAMP", 3), AP_OK);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_OK);
    assert_int_equal(events_of(product, AP_EVT_OUT_OF_STOCK, NULL), 1); /* not a no-op */
    ap_uow_rollback(uow);
}

/* A scope that rolls back (a rejected command) drops what it and the scopes inside it put
 * in the transaction's cache, and nothing that earlier scopes put there. */
static void test_a_rollback_keeps_what_earlier_scopes_cached(void **state)
{
    ap_uow_t *uow = *state;
    create(uow, "CACHED-A", "ca1", 10);
    create(uow, "CACHED-B", "cb1", 10);

    assert_int_equal(ap_uow_begin(uow), AP_OK);   /* the batch */
    assert_int_equal(ap_uow_begin(uow), AP_OK);   /* a command */
    allocate(uow, "o1", "CACHED-A", 1);            /* and its handler's scope */
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(ap_uow_begin(uow), AP_OK);   /* a command that fails */
    allocate(uow, "o2", "CACHED-B", 1);            /* after its handler committed */
    ap_uow_rollback(uow);

    size_t queries = ap_fake_uow_queries(uow);
    ap_product_t *product;
    assert_int_equal(ap_uow_begin(uow), AP_OK);
    assert_int_equal(ap_uow_get(uow, "CACHED-A", &product), AP_OK);
    assert_int_equal(ap_fake_uow_queries(uow), queries); /* still cached */
    assert_int_equal(ap_batch_allocated_qty(&product->batches[0]), 1);
    assert_int_equal(ap_uow_get(uow, "CACHED-B", &product), AP_OK);
    assert_int_equal(ap_fake_uow_queries(uow), queries + 1); /* dropped: loaded again */
    assert_int_equal(ap_batch_allocated_qty(&product->batches[0]), 0);
    ap_uow_rollback(uow);
    assert_int_equal(ap_uow_commit(uow), AP_OK);
    assert_int_equal(ap_batch_available_qty(ap_product_find_batch(
                         ap_fake_uow_stored(uow, "CACHED-B"), "cb1")),
                     10);
}

/* A line a decrease took back is known to be nowhere in the product (it never holds two
 * identical lines): its reallocation needs no lookup; another line of its order does. */
static void test_a_line_taken_back_is_reallocated_without_a_lookup(void **state)
{
    ap_uow_t *uow = *state;
    ap_product_t *product = two_lines_loaded(uow, "GONE-SOFA", "gs1");
    ap_order_line_t line;
    assert_int_equal(ap_product_change_batch_quantity(product, "gs1", 4), AP_OK); /* b leaves */
    assert_false(ap_product_knows_order(product, "b"));
    assert_int_equal(ap_order_line_init(&line, "b", "GONE-SOFA", 4), AP_OK);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_ERR_NEED_LINES);
    assert_int_equal(ap_order_line_init(&line, "b", "GONE-SOFA", 3), AP_OK);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_OK);
    assert_int_equal(events_of(product, AP_EVT_OUT_OF_STOCK, NULL), 1); /* 2 left, not 3 */
    assert_int_equal(product->ngone, 1);
    assert_int_equal(ap_product_change_batch_quantity(product, "gs1", 5), AP_OK);
    assert_int_equal(ap_product_allocate(product, &line, NULL), AP_OK);
    assert_int_equal(events_of(product, AP_EVT_ALLOCATED, NULL), 1);
    assert_int_equal(product->ngone, 0); /* a line of the batch again */
    ap_uow_rollback(uow);
}

static void test_kept_products_stay_under_the_memory_limit(void **state)
{
    ap_uow_t *uow = *state;
    const char *skus[] = {"E1", "E2", "E3", "E4", "E5"};
    char ref[8];
    for (size_t i = 0; i < 5; i++) {
        snprintf(ref, sizeof ref, "eb%zu", i);
        create(uow, skus[i], ref, 10);
    }
    /* What one of them costs once loaded (they are alike). */
    bool loaded;
    version_seen(uow, "E1", &loaded);
    size_t one = ap_product_footprint(ap_product_cache_peek(uow->committed, "E1"));

    /* Room for about three products: the fourth and fifth push the oldest out. */
    assert_int_equal(ap_uow_keep_committed(uow, 3 * one + one / 2), AP_OK);
    for (size_t i = 0; i < 5; i++) {
        version_seen(uow, skus[i], &loaded); /* loads it and keeps it */
        assert_true(loaded);
    }
    ap_product_cache_stats_t stats = ap_product_cache_stats(uow->committed);
    assert_true(stats.bytes <= 3 * one + one / 2);
    assert_int_equal(stats.products, 3);
    assert_int_equal(stats.evicted, 2);

    assert_int_equal(version_seen(uow, "E5", &loaded), 1);
    assert_false(loaded);
    assert_int_equal(version_seen(uow, "E1", &loaded), 1);
    assert_true(loaded); /* evicted, so loaded again */
}

static void test_keeping_nothing_loads_every_time(void **state)
{
    ap_uow_t *uow = *state;
    assert_int_equal(ap_uow_keep_committed(uow, 0), AP_OK);
    create(uow, "FORGETFUL-BED", "fb1", 10);
    bool loaded;
    version_seen(uow, "FORGETFUL-BED", &loaded);
    assert_true(loaded);
    version_seen(uow, "FORGETFUL-BED", &loaded);
    assert_true(loaded);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_a_committed_product_is_reused_when_storage_confirms_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_product_another_process_changed_is_loaded_again,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_rolled_back_transaction_leaves_no_change_behind,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_an_inner_rollback_keeps_what_earlier_scopes_committed, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_prefetch_confirms_kept_products_and_loads_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_kept_product_is_found_by_batch_ref, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_prefetch_by_batch_ref_uses_kept_products, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kept_products_stay_under_the_memory_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_keeping_nothing_loads_every_time, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_history_stays_in_storage_and_an_old_line_is_found_by_its_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_decrease_loads_only_the_newest_lines, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_rollback_keeps_what_earlier_scopes_cached, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_line_taken_back_is_reallocated_without_a_lookup,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_an_order_looked_up_after_the_newest_lines_is_not_counted_twice, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
