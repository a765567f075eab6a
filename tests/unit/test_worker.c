/*
 * test_worker.c - ap/worker.h's tear-down: ap_worker_free_owner frees an owner only once its
 * thread has returned (even one in a long nap), and frees one whose thread never started.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdlib.h>

#include "ap/worker.h"

typedef struct owner {
    ap_worker_t worker;
    atomic_bool returned; /* set by the thread as its last act */
    int *parts;           /* what the thread uses, freed by owner_free */
} owner_t;

/* What owner_free saw: how often it ran, and whether the thread had returned by then. */
static int frees;
static bool returned_before_free;

static void *owner_main(void *arg)
{
    owner_t *owner = arg;
    while (!ap_worker_stopping(&owner->worker)) {
        owner->parts[0]++;
        ap_worker_nap(&owner->worker, 60000); /* cut short by the stop */
    }
    atomic_store(&owner->returned, true);
    return NULL;
}

static void owner_free(void *arg)
{
    owner_t *owner = arg;
    frees++;
    returned_before_free = atomic_load(&owner->returned);
    free(owner->parts);
    free(owner);
}

static owner_t *owner_new(void)
{
    owner_t *owner = calloc(1, sizeof *owner);
    assert_non_null(owner);
    assert_non_null(owner->parts = calloc(1, sizeof *owner->parts));
    atomic_init(&owner->returned, false);
    ap_worker_init(&owner->worker);
    return owner;
}

static void test_frees_after_the_thread_returned(void **state)
{
    (void)state;
    frees = 0;
    returned_before_free = false;
    owner_t *owner = owner_new();
    assert_int_equal(ap_worker_start(&owner->worker, owner_main, owner), AP_OK);
    ap_worker_free_owner(&owner->worker, owner_free, owner);
    assert_int_equal(frees, 1);
    assert_true(returned_before_free);
}

static void test_frees_an_owner_whose_thread_never_started(void **state)
{
    (void)state;
    frees = 0;
    owner_t *owner = owner_new();
    ap_worker_free_owner(&owner->worker, owner_free, owner);
    assert_int_equal(frees, 1); /* and nothing leaks (the sanitizer build) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frees_after_the_thread_returned),
        cmocka_unit_test(test_frees_an_owner_whose_thread_never_started),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
