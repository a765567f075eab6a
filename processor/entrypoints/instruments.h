/*
 * instruments.h - every metric the processor exposes on /metrics, registered in one place so
 * a reader sees the whole list, and a new one is a field here plus one line in
 * instruments.c. Each loop updates its own instruments; measured values (memory, CPU, the
 * relay's counts, health flags) are read at scrape time by collectors.
 */
#ifndef AP_ENTRYPOINTS_INSTRUMENTS_H
#define AP_ENTRYPOINTS_INSTRUMENTS_H

#include "ap/metrics.h"

typedef struct ap_instruments {
    ap_metrics_t *registry; /* owned */

    /* the consumer (entrypoints/consumer.c) */
    ap_metric_t *commands;       /* allocation_commands_total{type,outcome} */
    ap_metric_t *batch_commands; /* allocation_batch_commands (histogram) */
    ap_metric_t *batch_duration; /* allocation_batch_duration_seconds (histogram) */
    ap_metric_t *consumer_lag;   /* allocation_consumer_lag_messages{topic,partition} */
    ap_metric_t *outbox_rows;    /* allocation_outbox_backlog_rows */
    ap_metric_t *outbox_age;     /* allocation_outbox_oldest_age_seconds */

    /* the relay (entrypoints/relay.c) */
    ap_metric_t *event_latency;  /* allocation_event_delivery_latency_seconds (histogram) */
    ap_metric_t *relay_delivered, *relay_failures, *relay_parked, *relay_leader;
    /* the out-of-stock email sender (entrypoints/email_sender.c) */
    ap_metric_t *email_delivered, *email_failures, *email_logged;

    /* health, set at scrape time from the loops' flags */
    ap_metric_t *backpressure, *postgres_up, *kafka_up, *consumer_joined;

    /* HTTP (entrypoints/http_routes.c) */
    ap_metric_t *http_requests;  /* allocation_http_requests_total{route,code} */
    ap_metric_t *http_duration;  /* allocation_http_request_duration_seconds{route} */

    /* the process */
    ap_metric_t *build_info, *resident_memory, *cpu_seconds, *start_time, *open_fds;
} ap_instruments_t;

/* Registers every family in a new registry. False when out of memory. */
bool ap_instruments_init(ap_instruments_t *ins);
void ap_instruments_release(ap_instruments_t *ins);

#endif
