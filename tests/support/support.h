/*
 * support.h - small helpers the integration tests and benchmarks share: time, connection
 * strings derived from DATABASE_URL, and topics of their own.
 */
#ifndef AP_TEST_SUPPORT_H
#define AP_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>

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

/*
 * Creates `topic` with `partitions` partitions (and the topic config max.message.bytes, when
 * `max_message_bytes` > 0) on the brokers at `bootstrap`, waiting up to 20 s for the answer.
 * False with the reason in `why` (no answer, or the broker's error).
 */
bool ap_test_create_topic(const char *bootstrap, const char *topic, int partitions,
                          int max_message_bytes, char *why, size_t whylen);

/* Deletes `topics` (n of them) the same way; a topic already gone is fine. False with the
 * reason of the last failure. */
bool ap_test_delete_topics(const char *bootstrap, char *const *topics, size_t n, char *why,
                           size_t whylen);

#endif
