/*
 * consumer_pool.h - CONSUMER_THREADS members of the consumer group in one process, each on a
 * thread of its own with its own runtime: a Kafka consumer, a Postgres unit of work with its
 * outbox, and its share of the product cache.
 *
 * The group spreads the partitions over the members as it would over replicas, so the
 * threads share nothing on the path of a command, and every guarantee of one consumer
 * (exactly-once by partition offsets in Postgres, per-sku order) holds for each. The pool
 * is what lets one process use more than one core: a consumer waits on Postgres for most of
 * a batch, and meanwhile another runs.
 *
 * Not a work queue: records never move between threads. A process with more threads than
 * the topics have partitions leaves the extra members idle, as extra replicas would be.
 */
#ifndef AP_ENTRYPOINTS_CONSUMER_POOL_H
#define AP_ENTRYPOINTS_CONSUMER_POOL_H

#include <signal.h>

#include "ap/config.h"
#include "ap/error.h"
#include "entrypoints/health.h"
#include "entrypoints/instruments.h"

typedef struct ap_consumer_pool ap_consumer_pool_t;

/*
 * Wires cfg->consumer_threads runtimes (ap_bootstrap_runtime), each with
 * cfg->product_cache_bytes / cfg->consumer_threads of product cache; no thread yet. NULL on
 * failure, with `err` set (logged). `cfg` and `ins` (may be NULL) are borrowed until
 * ap_consumer_pool_free returns.
 */
ap_consumer_pool_t *ap_consumer_pool_new(const ap_config_t *cfg, const ap_instruments_t *ins,
                                         ap_err_t *err);

/*
 * Runs every member (ap_consumer_run) until *stop becomes non-zero (a signal handler's flag)
 * or a member cannot go on, then stops them all and waits for them. Meanwhile `health` is
 * kept the sum of theirs: ready when every member is, alive while the slowest goes round.
 * Returns 0 after a requested stop, 1 when a member failed.
 */
int ap_consumer_pool_run(ap_consumer_pool_t *pool, ap_health_t *health,
                         volatile sig_atomic_t *stop);

/* Releases the runtimes. NULL is a no-op. Not while ap_consumer_pool_run runs. */
void ap_consumer_pool_free(ap_consumer_pool_t *pool);

#endif
