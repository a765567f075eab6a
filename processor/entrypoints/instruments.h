/*
 * instruments.h - every metric the processor exposes on /metrics, listed in one place so a
 * reader sees the whole list, and a new one is one row of AP_INSTRUMENTS. Each loop updates
 * its own instruments; measured values (memory, CPU, the relay's counts, health flags) are
 * read at scrape time by collectors.
 */
#ifndef AP_ENTRYPOINTS_INSTRUMENTS_H
#define AP_ENTRYPOINTS_INSTRUMENTS_H

#include "ap/metrics.h"

/*
 * Every family, in the order /metrics lists them, one row each:
 * X(field of ap_instruments_t, kind, name, labels or NULL, buckets, help).
 * Kinds are COUNTER, GAUGE and HISTOGRAM; buckets (BATCHES, SECONDS, or NO_BUCKETS for what
 * is not a histogram) are defined in instruments.c. Like ap_err_t's list in ap/error.h.
 */
#define AP_INSTRUMENTS(X)                                                                          \
    /* the consumers (entrypoints/consumer*.c) */                                                  \
    X(consumer_threads, GAUGE, "allocation_consumer_threads", NULL, NO_BUCKETS, "Consumer threads running (CONSUMER_THREADS), each a member of the group with its own Postgres session.") \
    X(commands, COUNTER, "allocation_commands_total", "type,outcome", NO_BUCKETS, "Commands read, by command type and outcome (applied, rejected, dead_lettered, failed, duplicate).") \
    X(batch_commands, HISTOGRAM, "allocation_batch_commands", NULL, BATCHES, "Commands per batch (one Postgres transaction).") \
    X(batch_duration, HISTOGRAM, "allocation_batch_duration_seconds", NULL, SECONDS, "Time from a batch's first attempt to its commit.") \
    X(command_age, HISTOGRAM, "allocation_batch_command_age_seconds", NULL, SECONDS, "Per batch, the age of its oldest command when this process read it, from the command's Kafka timestamp (its producer's send, unless the topic stamps the broker's append): the trip through the broker plus the wait in the partition.") \
    X(consumer_lag, GAUGE, "allocation_consumer_lag_messages", "topic,partition", NO_BUCKETS, "Records of an owned partition not applied yet: its end offset minus the offset stored in Postgres.") \
    X(outbox_rows, GAUGE, "allocation_outbox_backlog_rows", NULL, NO_BUCKETS, "Outbox rows waiting for the relay (counted up to BACKPRESSURE_MAX_ROWS + 1).") \
    X(outbox_age, GAUGE, "allocation_outbox_oldest_age_seconds", NULL, NO_BUCKETS, "Age of the oldest outbox row waiting for the relay.") \
                                                                                                   \
    /* the relay (entrypoints/relay.c) */                                                          \
    X(event_latency, HISTOGRAM, "allocation_event_delivery_latency_seconds", NULL, SECONDS, "Time from an event's commit to Kafka's acknowledgement, as this process's relay saw it.") \
    X(relay_delivered, COUNTER, "allocation_relay_delivered_total", NULL, NO_BUCKETS, "Outbox rows this process's relay delivered to Kafka and deleted.") \
    X(relay_failures, COUNTER, "allocation_relay_delivery_failures_total", NULL, NO_BUCKETS, "Failed delivery reports (the row stays and is sent again).") \
    X(relay_parked, COUNTER, "allocation_relay_parked_total", NULL, NO_BUCKETS, "Outbox rows Kafka refused for good, moved to outbox_parked.") \
    X(relay_refused, COUNTER, "allocation_relay_refused_total", NULL, NO_BUCKETS, "Delivery reports in which a topic refused a record as too large (max.message.bytes); the row stays and is sent again.") \
    X(relay_refused_rows, GAUGE, "allocation_relay_refused_rows", NULL, NO_BUCKETS, "Outbox rows a topic refused in the relay's last batch: above 0, events of those skus wait until the topic accepts them.") \
    X(relay_leader, GAUGE, "allocation_relay_leader", NULL, NO_BUCKETS, "1 while this process holds the relay lock (its relay is the active one).") \
                                                                                                   \
    /* the out-of-stock email sender (entrypoints/email_sender.c) */                               \
    X(email_delivered, COUNTER, "allocation_email_deliveries_total", NULL, NO_BUCKETS, "Out-of-stock emails the SMTP server accepted (their rows deleted).") \
    X(email_failures, COUNTER, "allocation_email_failures_total", NULL, NO_BUCKETS, "Failed SMTP attempts (the email stays and is tried again).") \
    X(email_logged, COUNTER, "allocation_email_logged_total", NULL, NO_BUCKETS, "Out-of-stock emails written to the log because SMTP_URL is not set.") \
                                                                                                   \
    /* health, set at scrape time from the loops' flags */                                         \
    X(backpressure, GAUGE, "allocation_backpressure_active", NULL, NO_BUCKETS, "1 while consumption is paused because the outbox is behind.") \
    X(postgres_up, GAUGE, "allocation_postgres_up", NULL, NO_BUCKETS, "1 while Postgres is reachable.") \
    X(postgres_fault, GAUGE, "allocation_postgres_fault", "fault", NO_BUCKETS, "1 for what keeps Postgres from taking writes now (unreachable, read_only, connection_limit, no_resources), else 0.") \
    X(kafka_up, GAUGE, "allocation_kafka_up", NULL, NO_BUCKETS, "1 while a Kafka broker is reachable.") \
    X(consumer_joined, GAUGE, "allocation_consumer_group_joined", NULL, NO_BUCKETS, "1 while every consumer thread is a member of its group.") \
                                                                                                   \
    /* HTTP (entrypoints/http_routes.c) */                                                         \
    X(http_requests, COUNTER, "allocation_http_requests_total", "route,code", NO_BUCKETS, "HTTP requests answered, by route and status code.") \
    X(http_duration, HISTOGRAM, "allocation_http_request_duration_seconds", "route", SECONDS, "Time to answer an HTTP request, by route.") \
                                                                                                   \
    /* the process, read at scrape time */                                                         \
    X(build_info, GAUGE, "allocation_build_info", "version", NO_BUCKETS, "Always 1; the version is a label.") \
    X(resident_memory, GAUGE, "process_resident_memory_bytes", NULL, NO_BUCKETS, "Resident memory size in bytes.") \
    X(cpu_seconds, COUNTER, "process_cpu_seconds_total", NULL, NO_BUCKETS, "Total user and system CPU time spent in seconds.") \
    X(start_time, GAUGE, "process_start_time_seconds", NULL, NO_BUCKETS, "Start time of the process since unix epoch in seconds.") \
    X(open_fds, GAUGE, "process_open_fds", NULL, NO_BUCKETS, "Number of open file descriptors.")

typedef struct ap_instruments {
    ap_metrics_t *registry; /* owned */
#define AP_INSTRUMENT_FIELD(field, kind, name, labels, buckets, help) ap_metric_t *field;
    AP_INSTRUMENTS(AP_INSTRUMENT_FIELD)
#undef AP_INSTRUMENT_FIELD
} ap_instruments_t;

/* Registers every family in a new registry. False when out of memory. */
bool ap_instruments_init(ap_instruments_t *ins);
void ap_instruments_release(ap_instruments_t *ins);

#endif
