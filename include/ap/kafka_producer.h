/*
 * kafka_producer.h - the Kafka producer adapter: an idempotent librdkafka producer (acks=all,
 * Java-compatible murmur2 partitioning, retries without a deadline) that sends records with
 * headers and reports each delivery through a callback carrying the caller's per-record
 * opaque.
 *
 * It is not a queue of its own and knows nothing of the outbox: the relay decides what to
 * send and what a delivery report means. One thread uses a producer; delivery callbacks run
 * on that thread, inside ap_producer_poll and ap_producer_purge.
 */
#ifndef AP_KAFKA_PRODUCER_H
#define AP_KAFKA_PRODUCER_H

#include <stdbool.h>
#include <stddef.h>

#include "ap/config.h"
#include "ap/error.h"
#include "ap/header.h"

typedef struct ap_producer ap_producer_t;

/*
 * Called once per record sent, on the polling thread. `opaque` is the record's, as given to
 * ap_producer_send. `err` is AP_OK when Kafka acknowledged the record (acks=all); otherwise
 * `reason` is librdkafka's text (borrowed for the call). AP_ERR_TOO_LARGE means the broker
 * refused the record's request as too large for the topic (its max.message.bytes): it may
 * pass once that is raised. AP_ERR_REFUSED means the record itself is unacceptable
 * (invalid, a bad topic name): sending it again cannot succeed. Records purged at shutdown
 * report AP_ERR_UNAVAILABLE.
 */
typedef void (*ap_producer_delivery_fn)(void *ctx, void *opaque, ap_err_t err,
                                        const char *reason);

/*
 * Creates a producer for cfg->bootstrap_servers: enable.idempotence=true, acks=all,
 * partitioner=murmur2_random, linger.ms=5, message.timeout.ms=0 (retry until delivered),
 * then cfg->kafka's pass-through properties, which may override any of these. `client_id`
 * names it to the brokers. AP_ERR_CONFIG (logged) when librdkafka refuses a property.
 * Caller frees with ap_producer_free.
 */
ap_err_t ap_producer_new(const ap_config_t *cfg, const char *client_id,
                         ap_producer_delivery_fn on_delivery, void *ctx, ap_producer_t **out);

/*
 * Queues one record; everything is copied. A NULL key or value is sent as null (an empty,
 * non-NULL one as empty). `headers` are sent in order. AP_ERR_UNAVAILABLE when the local
 * queue is full (poll, then send again); AP_ERR_REFUSED when the record cannot ever be
 * sent (e.g. larger than message.max.bytes); any other error is logged and means this record
 * will not be sent this time (no delivery report follows).
 */
ap_err_t ap_producer_send(ap_producer_t *producer, const char *topic, const void *key,
                          size_t key_len, const void *value, size_t value_len,
                          const ap_header_t *headers, size_t nheaders, void *opaque);

/* Serves delivery reports and librdkafka events for up to timeout_ms; returns how many. */
int ap_producer_poll(ap_producer_t *producer, int timeout_ms);

/* Sends what is queued now, without waiting for linger.ms, and serves reports until all are
 * in or timeout_ms passed. For a caller that waits for a whole batch anyway. A linger the
 * configuration set explicitly (KAFKA_LINGER_MS) is honoured: then this only polls. */
void ap_producer_flush(ap_producer_t *producer, int timeout_ms);

/*
 * Gives up on every record not acknowledged yet: each gets a report with AP_ERR_UNAVAILABLE
 * (served before this returns, bounded by timeout_ms). Kafka may still have stored some of
 * them, so re-sending them later may duplicate.
 */
void ap_producer_purge(ap_producer_t *producer, int timeout_ms);

/* Records queued or in flight, not yet reported. */
int ap_producer_pending(ap_producer_t *producer);

/*
 * True once librdkafka raised a fatal error (the idempotent producer cannot continue);
 * logged once. The owner purges, frees and creates a new producer.
 */
bool ap_producer_fatal(ap_producer_t *producer);

/* False after librdkafka reported every broker down, until a record is acknowledged again or
 * a broker answers a metadata request (asked at most once a second, waiting up to 500 ms).
 * The owner's thread. */
bool ap_producer_reachable(ap_producer_t *producer);

/* Frees at once: records not reported yet are dropped without a report (poll until
 * ap_producer_pending is 0, or purge, first). NULL is a no-op. */
void ap_producer_free(ap_producer_t *producer);

#endif
