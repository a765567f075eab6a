/*
 * test_worker.c - ap/worker.h's lifecycle: ap_worker_destroy frees an owner only once its
 * thread has returned (even one in a long nap), and a spawn whose setup fails frees what
 * the setup made, once, and starts no thread; the thread is named after its kind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "ap/worker.h"

typedef struct owner {
    int *parts; /* what the thread uses, made by owner_setup, freed by owner_release */
    ap_worker_t worker;
    atomic_bool ran;      /* set by the thread as it starts */
    atomic_bool returned; /* set by the thread as its last act */
    char name[17];        /* the thread's name, as it saw it (Linux) */
} owner_t;

/* What owner_release saw: how often it ran, and whether the thread had returned by then. */
static int frees;
static bool returned_before_free, ran_before_free;

static ap_err_t owner_setup(void *arg, const void *fail_with)
{
    owner_t *owner = arg;
    owner->parts = calloc(1, sizeof *owner->parts);
    if (!owner->parts)
        return AP_ERR_NOMEM;
    return fail_with ? *(const ap_err_t *)fail_with : AP_OK;
}

static void *owner_main(void *arg)
{
    owner_t *owner = arg;
#ifdef __linux__
    (void)prctl(PR_GET_NAME, owner->name, 0, 0, 0);
#endif
    atomic_store(&owner->ran, true);
    while (!ap_worker_stopping(&owner->worker)) {
        owner->parts[0]++;
        ap_worker_nap(&owner->worker, 60000); /* cut short by the stop */
    }
    atomic_store(&owner->returned, true);
    return NULL;
}

static void owner_release(void *arg)
{
    owner_t *owner = arg;
    frees++;
    returned_before_free = atomic_load(&owner->returned);
    ran_before_free = atomic_load(&owner->ran);
    free(owner->parts);
}

static const ap_worker_kind_t owner_kind = {"test", sizeof(owner_t), offsetof(owner_t, worker),
                                            owner_setup, owner_main, owner_release};

static void reset(void)
{
    frees = 0;
    returned_before_free = ran_before_free = false;
}

static void test_destroy_frees_after_the_thread_returned(void **state)
{
    (void)state;
    reset();
    ap_err_t err = AP_ERR_INTERNAL;
    owner_t *owner = ap_worker_spawn(&owner_kind, NULL, &err);
    assert_non_null(owner);
    assert_int_equal(err, AP_OK);
    for (int ms = 0; ms < 5000 && !atomic_load(&owner->ran); ms++) /* its first act */
        ap_worker_nap(&owner->worker, 1);
    assert_true(atomic_load(&owner->ran));
#ifdef __linux__
    assert_string_equal(owner->name, "ap-test");
#endif
    ap_worker_destroy(&owner->worker);
    assert_int_equal(frees, 1);
    assert_true(returned_before_free);
}

static void test_a_failed_setup_frees_what_it_made_and_starts_no_thread(void **state)
{
    (void)state;
    reset();
    const ap_err_t refuse = AP_ERR_CONFIG;
    ap_err_t err = AP_OK;
    assert_null(ap_worker_spawn(&owner_kind, &refuse, &err));
    assert_int_equal(err, AP_ERR_CONFIG);
    assert_int_equal(frees, 1); /* and `parts` does not leak (the sanitizer build) */
    assert_false(ran_before_free);
}

static void test_destroy_of_null_does_nothing(void **state)
{
    (void)state;
    reset();
    ap_worker_destroy(NULL);
    assert_int_equal(frees, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_destroy_frees_after_the_thread_returned),
        cmocka_unit_test(test_a_failed_setup_frees_what_it_made_and_starts_no_thread),
        cmocka_unit_test(test_destroy_of_null_does_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
