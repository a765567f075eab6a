/*
 * command_gateway.h - how the HTTP API puts commands on the command topic: one idempotent
 * producer (kafka producer.h) served by a thread of its own, shared by every request thread.
 * A request hands over its record and blocks until Kafka has acknowledged it or given up.
 */
#ifndef AP_ENTRYPOINTS_COMMAND_GATEWAY_H
#define AP_ENTRYPOINTS_COMMAND_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>

#include "ap/config.h"
#include "ap/kafka_producer.h"

typedef struct ap_command_gateway ap_command_gateway_t;

/*
 * Starts the producer thread. A record Kafka has not acknowledged within the HTTP wait
 * (HTTP_COMMAND_WAIT_MS, at least a second) fails (librdkafka's message.timeout.ms; a
 * KAFKA_MESSAGE_TIMEOUT_MS setting wins). `cfg` is borrowed until stop. Caller stops with
 * ap_command_gateway_stop. NULL on failure, with `err` set.
 */
ap_command_gateway_t *ap_command_gateway_start(const ap_config_t *cfg, ap_err_t *err);

/*
 * Produces one record (everything copied) and waits for its delivery report: AP_OK once
 * Kafka acknowledged it (acks=all), AP_ERR_UNAVAILABLE when Kafka could not be reached in
 * time (the record may still have been written), another error when refused. Any thread.
 */
ap_err_t ap_command_gateway_send(ap_command_gateway_t *gateway, const char *topic,
                                 const char *key, const char *value,
                                 const ap_header_t *headers, size_t nheaders);

/* False while the producer sees every broker down. Any thread. */
bool ap_command_gateway_reachable(ap_command_gateway_t *gateway);

/* Gives up on records in flight (each reports AP_ERR_UNAVAILABLE), joins, frees. NULL is a
 * no-op. Call only once no request thread sends any more. */
void ap_command_gateway_stop(ap_command_gateway_t *gateway);

#endif
