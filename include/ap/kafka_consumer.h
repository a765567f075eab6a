/*
 * kafka_consumer.h - the Kafka consumer adapter: a consumer-group member that reads command
 * topics with cooperative-sticky assignment, never commits offsets to Kafka on its own, and
 * asks its owner where each newly assigned partition starts. (Also topic creation, which
 * kafka_admin.c does before the consumer subscribes.)
 *
 * The processor keeps its offsets in Postgres, committed with the effects they cover, and
 * never commits offsets to Kafka: librdkafka 2.0.2 loses a cooperative assignment when a
 * commit meets a rebalance (its issue #4059), and the group's offsets would only be a
 * second, weaker copy. One thread uses a consumer; the rebalance callbacks run inside
 * ap_kafka_consumer_poll on that thread.
 */
#ifndef AP_KAFKA_CONSUMER_H
#define AP_KAFKA_CONSUMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ap/config.h"
#include "ap/error.h"
#include "ap/header.h"

typedef struct ap_kafka_consumer ap_kafka_consumer_t;

/* A consumed message, borrowed until ap_kafka_record_release. */
typedef struct ap_record {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    int64_t timestamp_ms; /* Kafka's timestamp (ms since the epoch): the producer's send, or the
                             broker's append on a LogAppendTime topic; -1 when there is none */
    void *handle; /* the adapter's own message */
} ap_record_t;

typedef struct ap_kafka_rebalance {
    /* A partition was assigned: write where to start reading (-1: the beginning). An error
     * leaves the partition unassigned until the next rebalance. */
    ap_err_t (*assigned)(void *ctx, const char *topic, int32_t partition, int64_t *start);
    /* A partition was taken away; no record of it is handed out after this. */
    void (*revoked)(void *ctx, const char *topic, int32_t partition);
    void *ctx;
} ap_kafka_rebalance_t;

/* Creates the consumer (not yet subscribed). `rebalance` is copied. */
ap_err_t ap_kafka_consumer_new(const ap_config_t *cfg, const ap_kafka_rebalance_t *rebalance,
                               ap_kafka_consumer_t **out);

/* Creates the topics that do not exist yet, with cfg's partitions and replication factor. */
ap_err_t ap_kafka_create_topics(const ap_config_t *cfg, char *const *topics, size_t ntopics,
                                int timeout_ms);

ap_err_t ap_kafka_consumer_subscribe(ap_kafka_consumer_t *consumer, char *const *topics,
                                     size_t ntopics);

/* Waits up to timeout_ms for a record: AP_OK with `rec` filled, or AP_ERR_NOT_FOUND. */
ap_err_t ap_kafka_consumer_poll(ap_kafka_consumer_t *consumer, int timeout_ms, ap_record_t *rec);
void ap_kafka_record_release(ap_record_t *rec);

/* The value of a record's last header named `name`, or NULL. Borrowed like the record. */
const char *ap_kafka_record_header(const ap_record_t *rec, const char *name, size_t *len);

/* The i-th header of a record (i from 0), or false past the last. Borrowed like the record. */
bool ap_kafka_record_header_at(const ap_record_t *rec, size_t i, ap_header_t *header);

/* Restarts reading a partition at `offset` (after a fenced commit). */
ap_err_t ap_kafka_consumer_seek(ap_kafka_consumer_t *consumer, const char *topic,
                                int32_t partition, int64_t offset);

/* Stops (or restarts) fetching every assigned partition, including partitions assigned
 * while paused; records already fetched may still arrive. */
void ap_kafka_consumer_pause(ap_kafka_consumer_t *consumer, bool pause);

/* False while no broker answers. After librdkafka reports a failed connection it asks a
 * broker (blocking up to 0.5 s, at most once a second) instead of guessing. */
bool ap_kafka_consumer_reachable(ap_kafka_consumer_t *consumer);

/* How many times a poll found the queue drained after a backlog and woke the fetcher (see
 * kafka_consumer.c); `partitions` (may be NULL): how many partitions the last time sought. */
uint64_t ap_kafka_consumer_fetch_wakes(const ap_kafka_consumer_t *consumer, int *partitions);

/* True once the consumer is a member of its group (it has a member id), with or without
 * partitions. */
bool ap_kafka_consumer_joined(ap_kafka_consumer_t *consumer);

/* A partition's end offset (the next offset to be written) as last seen by fetches, without
 * asking a broker; AP_ERR_NOT_FOUND while none is known. For the lag metric. */
ap_err_t ap_kafka_consumer_end_offset(ap_kafka_consumer_t *consumer, const char *topic,
                                      int32_t partition, int64_t *end);

/* Leaves the group (revoking every partition) and frees. NULL is a no-op. */
void ap_kafka_consumer_close(ap_kafka_consumer_t *consumer);

#endif
