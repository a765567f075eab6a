/*
 * consumer.h - the `run` loop: Kafka records in, one Postgres transaction per command out.
 */
#ifndef AP_ENTRYPOINTS_CONSUMER_H
#define AP_ENTRYPOINTS_CONSUMER_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "ap/avro.h"
#include "ap/bootstrap.h"
#include "ap/config.h"
#include "ap/outbox.h"

/* What the loop knows about its dependencies, for a readiness probe (any thread may read). */
typedef struct ap_health {
    atomic_bool database;     /* the last transaction reached Postgres */
    atomic_bool kafka;        /* some broker answers */
    atomic_bool backpressure; /* consumption paused while the outbox relay catches up */
} ap_health_t;

/* Ready: Postgres and Kafka both reachable. Backpressure is not unreadiness. */
bool ap_health_ready(const ap_health_t *health);

/*
 * Creates the topics if missing, then consumes the command topics until *stop becomes
 * non-zero; finishes the record in hand, leaves the group and returns 0; returns 1 when the
 * consumer cannot start. Rejections and dead letters go to `outbox` (the one bound to the
 * app's unit of work); Avro commands are decoded with `codec`; `health` is kept current.
 * All borrowed.
 */
int ap_consumer_run(const ap_config_t *cfg, ap_app_t *app, ap_outbox_t *outbox,
                    ap_avro_codec_t *codec, ap_health_t *health, volatile sig_atomic_t *stop);

#endif
