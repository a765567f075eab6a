/*
 * relay.h - the outbox relay: moves committed rows of the `outbox` table to Kafka.
 *
 * Runs on a thread of its own inside `allocation-processor run`, with its own Postgres
 * connection and idempotent producer (acks=all). Only one relay is active across all
 * replicas: the one holding a session-level advisory lock; the others wait and take over
 * within seconds when the holder's session ends. The active relay wakes on LISTEN/NOTIFY
 * (channel "outbox", polling as a fallback), produces rows in id order, and deletes them only
 * after their delivery reports succeed; a row is re-sent after a crash with the same
 * `event-id` header.
 */
#ifndef AP_RELAY_H
#define AP_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "ap/config.h"
#include "ap/error.h"
#include "ap/metrics.h"

typedef struct ap_relay ap_relay_t;

typedef struct ap_relay_stats {
    uint64_t delivered; /* rows acknowledged by Kafka and deleted */
    uint64_t failed;    /* delivery reports with an error (the row stays and is retried) */
    uint64_t parked;    /* rows Kafka refused for good, moved to outbox_parked */
    uint64_t refused;   /* delivery reports refusing a record as too large for its topic */
    size_t refused_rows; /* rows held up by such refusals after the last batch (0: none) */
    char refused_reason[256]; /* which topic, how large, Kafka's words ("" when none) */
    bool leader;        /* holds the relay lock now */
    bool connected;     /* Postgres and Kafka reachable at the last attempt */
    int64_t silent_ms;  /* since the loop last went round (0 while it naps on purpose) */
} ap_relay_stats_t;

/* Starts the relay thread. `cfg` is borrowed until ap_relay_stop returns. Caller stops it
 * with ap_relay_stop. NULL on failure, with `err` set (logged where Kafka's configuration
 * or the thread was refused). */
ap_relay_t *ap_relay_start(const ap_config_t *cfg, ap_err_t *err);

/* Thread-safe snapshot of the relay's counters. */
void ap_relay_stats(ap_relay_t *relay, ap_relay_stats_t *stats);

/* Has the relay observe, into `latency` (a histogram of seconds; borrowed until stop), the
 * time from each delivered row's insert to Kafka's acknowledgement. Any thread. */
void ap_relay_observe_latency(ap_relay_t *relay, ap_metric_t *latency);

/* Asks the thread to stop, waits for deliveries in flight (bounded), joins and frees.
 * NULL is a no-op. */
void ap_relay_stop(ap_relay_t *relay);

#endif
