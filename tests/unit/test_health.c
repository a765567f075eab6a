/*
 * test_health.c - ap_health_sum, how the probes see several consumer threads as one: ready
 * only when every member is, the first failing member's fault, paused when any member is,
 * and alive only as long as the member that went round longest ago.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "entrypoints/health.h"

enum { N = 3 };

static void members(ap_health_t each[N])
{
    for (int i = 0; i < N; i++) {
        ap_health_init(&each[i]);
        atomic_store(&each[i].joined, true);
        atomic_store(&each[i].heartbeat_ms, 1000 + i);
    }
}

static void test_all_fine_is_fine(void **state)
{
    (void)state;
    ap_health_t each[N], sum;
    members(each);
    ap_health_init(&sum);
    ap_health_sum(&sum, each, N);
    assert_true(atomic_load(&sum.database));
    assert_int_equal(atomic_load(&sum.database_fault), AP_FAULT_NONE);
    assert_true(atomic_load(&sum.kafka));
    assert_true(atomic_load(&sum.joined));
    assert_false(atomic_load(&sum.backpressure));
    assert_int_equal(atomic_load(&sum.heartbeat_ms), 1000); /* the oldest beat */
}

static void test_one_member_decides_what_is_wrong(void **state)
{
    (void)state;
    ap_health_t each[N], sum;
    members(each);
    ap_health_init(&sum);
    atomic_store(&each[1].database, false);
    atomic_store(&each[1].database_fault, AP_FAULT_READ_ONLY);
    atomic_store(&each[2].database, false);
    atomic_store(&each[2].database_fault, AP_FAULT_UNREACHABLE);
    atomic_store(&each[2].kafka, false);
    atomic_store(&each[0].joined, false);
    atomic_store(&each[1].backpressure, true);
    atomic_store(&each[2].heartbeat_ms, 10);
    ap_health_sum(&sum, each, N);
    assert_false(atomic_load(&sum.database));
    assert_int_equal(atomic_load(&sum.database_fault), AP_FAULT_READ_ONLY); /* the first */
    assert_false(atomic_load(&sum.kafka));
    assert_false(atomic_load(&sum.joined));
    assert_true(atomic_load(&sum.backpressure));
    assert_int_equal(atomic_load(&sum.heartbeat_ms), 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_fine_is_fine),
        cmocka_unit_test(test_one_member_decides_what_is_wrong),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
