/*
 * test_strset.c - ap/strset.h: a string added twice is found with the value it was added
 * with first, by content rather than by pointer; a full set refuses to add; thousands of
 * strings (the table grows) are all found again, and strings never added are not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ap/strset.h"

static void test_the_first_value_is_kept(void **state)
{
    (void)state;
    char again[] = "order-1"; /* same content, another pointer */
    ap_strset_t set;
    size_t value = 99;
    assert_true(ap_strset_init(&set, 3));
    assert_false(ap_strset_find(&set, "order-1", &value));
    assert_int_equal(value, 99);
    assert_int_equal(ap_strset_add(&set, "order-1", 0, &value), AP_STRSET_ADDED);
    assert_int_equal(value, 0);
    assert_int_equal(ap_strset_add(&set, "order-2", 1, NULL), AP_STRSET_ADDED);
    assert_int_equal(ap_strset_add(&set, again, 2, &value), AP_STRSET_FOUND);
    assert_int_equal(value, 0);
    assert_true(ap_strset_find(&set, "order-2", &value));
    assert_int_equal(value, 1);
    assert_false(ap_strset_find(&set, "", NULL));
    assert_int_equal(set.count, 2);
    ap_strset_free(&set);
}

static void test_a_full_set_refuses(void **state)
{
    (void)state;
    ap_strset_t set;
    assert_true(ap_strset_init(&set, 1));
    assert_int_equal(ap_strset_add(&set, "a", 7, NULL), AP_STRSET_ADDED);
    assert_int_equal(ap_strset_add(&set, "b", 8, NULL), AP_STRSET_NOMEM);
    assert_false(ap_strset_find(&set, "b", NULL));
    size_t value = 0;
    assert_int_equal(ap_strset_add(&set, "a", 9, &value), AP_STRSET_FOUND); /* not "full" */
    assert_int_equal(value, 7);
    ap_strset_free(&set);

    assert_true(ap_strset_init(&set, 0)); /* an empty batch */
    assert_false(ap_strset_find(&set, "a", NULL));
    assert_int_equal(ap_strset_add(&set, "a", 0, NULL), AP_STRSET_NOMEM);
    ap_strset_free(&set);
}

static void test_many_strings(void **state)
{
    (void)state;
    enum { N = 5000 };
    static char keys[N][16];
    ap_strset_t set;
    assert_true(ap_strset_init(&set, N));
    for (size_t i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "sku-%zu", i);
        assert_int_equal(ap_strset_add(&set, keys[i], i, NULL), AP_STRSET_ADDED);
    }
    for (size_t i = 0; i < N; i++) {
        char key[16];
        size_t value = SIZE_MAX;
        snprintf(key, sizeof key, "sku-%zu", i);
        assert_true(ap_strset_find(&set, key, &value));
        assert_int_equal(value, i);
    }
    assert_false(ap_strset_find(&set, "sku-5000", NULL));
    assert_false(ap_strset_find(&set, "sku-", NULL));
    ap_strset_free(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_first_value_is_kept),
        cmocka_unit_test(test_a_full_set_refuses),
        cmocka_unit_test(test_many_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
