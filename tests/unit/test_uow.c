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
    ap_uow_prefetch(uow, skus, 5, NULL, 0);
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
    ap_uow_prefetch(uow, skus, 1, refs, 2);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
