/*
 * support.h - small helpers the integration tests and benchmarks share: time, and
 * connection strings derived from DATABASE_URL.
 */
#ifndef AP_TEST_SUPPORT_H
#define AP_TEST_SUPPORT_H

/* Monotonic microseconds. */
long long ap_test_now_us(void);

/* Sleeps `ms` milliseconds (inside polling loops with a deadline, never as synchronisation). */
void ap_test_pause_ms(int ms);

/* A fixed schedule for benchmarks that send at a rate: moves the CLOCK_MONOTONIC time `next`
 * on by `period_ns` and sleeps until then. */
struct timespec;
void ap_test_sleep_next(struct timespec *next, long long period_ns);

/*
 * `conninfo` (a libpq URI or keyword string) with one keyword set to `value`, as a
 * keyword='value' string. NULL when `conninfo` does not parse (with libpq's reason in
 * *why, which the caller frees with PQfreemem) or memory runs out. Caller frees with free().
 */
char *ap_test_conninfo_with(const char *conninfo, const char *key, const char *value,
                            char **why);

/*
 * DATABASE_URL, once the database it names is migrated, with warnings-only logging: the
 * start of an integration test's main. A missing DATABASE_URL or a failed migration is
 * reported with `test`'s name and exits 1: these tests never skip.
 */
const char *ap_test_migrated_db(const char *test);

#endif
