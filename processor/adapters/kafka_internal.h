/*
 * kafka_internal.h - what the librdkafka adapters (consumer, producer, admin) share: one
 * way to build a client configuration and one way to log what librdkafka says.
 *
 * Private to processor/adapters/.
 */
#ifndef AP_ADAPTERS_KAFKA_INTERNAL_H
#define AP_ADAPTERS_KAFKA_INTERNAL_H

#include <librdkafka/rdkafka.h>

#include "ap/config.h"

/*
 * A client configuration: bootstrap.servers, then `defaults` (name, value, name, value, ...,
 * NULL), then the user's KAFKA_* pass-through properties, which may override any default;
 * logging goes through ap_log. NULL (logged) when librdkafka refuses a property. The caller
 * passes it to rd_kafka_new or destroys it.
 */
rd_kafka_conf_t *ap_kafka_conf_new(const ap_config_t *cfg, const char *const *defaults);

#endif
