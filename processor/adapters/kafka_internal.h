/*
 * kafka_internal.h - what the librdkafka adapters (consumer, producer, admin) share: one
 * way to build a client configuration and one way to log what librdkafka says.
 *
 * Private to processor/adapters/.
 */
#ifndef AP_ADAPTERS_KAFKA_INTERNAL_H
#define AP_ADAPTERS_KAFKA_INTERNAL_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

#include "ap/config.h"

/*
 * A client configuration: bootstrap.servers, then `defaults` (name, value, name, value, ...,
 * NULL), then the user's KAFKA_* pass-through properties, which may override any default;
 * logging goes through ap_log. NULL (logged) when librdkafka refuses a property. The caller
 * passes it to rd_kafka_new or destroys it.
 */
rd_kafka_conf_t *ap_kafka_conf_new(const ap_config_t *cfg, const char *const *defaults);

/* Creates a client of `type` whose errors go to `error_cb` with `opaque` (the adapter);
 * takes ownership of `conf`, on failure too (logged, NULL). */
rd_kafka_t *ap_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf,
                         void (*error_cb)(rd_kafka_t *, int, const char *, void *), void *opaque);

/*
 * For an error callback: true when librdkafka's error is a refusal (SASL authentication, TLS
 * handshake or certificate verification), which goes to ap/denial.h (logged there, once);
 * false for anything else, which the caller handles as before.
 */
bool ap_kafka_denied(int err, const char *reason);

/* CLOCK_MONOTONIC milliseconds: the adapters' deadlines (they have no clock port). */
int64_t ap_kafka_now_ms(void);

#endif
