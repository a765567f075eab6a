/*
 * health.h - what the loops know about their dependencies, for the readiness probe and the
 * health gauges: Postgres and Kafka reachable (and if not, why), the consumer in its group,
 * consumption paused, and when the consumer loop last went round. Any thread may read it;
 * the consumer loop writes it.
 */
#ifndef AP_ENTRYPOINTS_HEALTH_H
#define AP_ENTRYPOINTS_HEALTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ap/fault.h"

typedef struct ap_health {
    atomic_bool database;      /* the last transaction reached Postgres */
    atomic_int database_fault; /* an ap_fault_t: why not, while `database` is false */
    atomic_bool kafka;         /* some broker answers */
    atomic_bool backpressure;  /* consumption paused while the outbox relay catches up */
    atomic_bool joined;        /* the consumer is a member of its group */
    atomic_llong heartbeat_ms; /* monotonic ms when the loop last went round (or backed off) */
} ap_health_t;

/* All ready but the group (not joined yet), the heartbeat now. */
void ap_health_init(ap_health_t *health);

/* Monotonic milliseconds, the clock of heartbeat_ms. */
int64_t ap_health_now_ms(void);

/*
 * Records whether Postgres took the last transaction and, if not, the fault that stopped
 * it; a change is logged once (one line at warn level naming the fault, one at info level
 * when it passes), so a batch retried through an outage does not flood the log.
 */
void ap_health_set_database(ap_health_t *health, bool ok, ap_fault_t fault);

/* Records whether a broker answers; a change is logged once. */
void ap_health_set_kafka(ap_health_t *health, bool ok);

/*
 * Stores into `sum` the health of n loops seen as one (consumer_pool.h's members): each
 * dependency fine only when it is fine for all (the fault shown is the first failing one's),
 * paused when any is, in the group when all are, and the heartbeat of the one that went round
 * longest ago. Nothing is logged: each loop logged its own changes.
 */
void ap_health_sum(ap_health_t *sum, const ap_health_t *each, size_t n);

#endif
