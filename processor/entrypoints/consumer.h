/*
 * consumer.h - the `run` loop: Kafka records in, one Postgres transaction per command out.
 */
#ifndef AP_ENTRYPOINTS_CONSUMER_H
#define AP_ENTRYPOINTS_CONSUMER_H

#include <stdatomic.h>

#include "ap/avro.h"
#include "ap/bootstrap.h"
#include "ap/config.h"
#include "ap/outbox.h"
#include "entrypoints/health.h"
#include "entrypoints/instruments.h"


/*
 * Creates the topics if missing, then consumes the command topics until *stop becomes
 * true; finishes the record in hand, leaves the group and returns 0; returns 1 when the
 * consumer cannot start. Rejections and dead letters go to `outbox` (the one bound to the
 * app's unit of work); Avro commands are decoded with `codec`; `health` is kept current;
 * `ins` (may be NULL) receives the consumer's metrics. All borrowed.
 *
 * A command with a `message-id` header is applied at most once per id: its outcome is
 * recorded (outcomes.h) in its batch's transaction, and a command whose id has an outcome
 * already is skipped (counted as a duplicate).
 */
int ap_consumer_run(const ap_config_t *cfg, ap_app_t *app, ap_outbox_t *outbox,
                    ap_avro_codec_t *codec, ap_health_t *health, const ap_instruments_t *ins,
                    atomic_bool *stop);

#endif
