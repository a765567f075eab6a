/*
 * instruments.c - the processor's metric families (instruments.h), and the collector of the
 * process's own figures (resident memory, CPU, open files) from /proc.
 */
#include "entrypoints/instruments.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Commands per batch; seconds for a batch's transaction; seconds from commit to Kafka's ack. */
static const double batch_buckets[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000};
static const double duration_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,   0.25,   0.5,   1,    2.5,   5, 10};
#define N(a) (sizeof a / sizeof *a)

/* Reads /proc/self: resident memory, CPU time, open descriptors. */
static void collect_process(void *ctx)
{
    ap_instruments_t *ins = ctx;
    long page = sysconf(_SC_PAGESIZE), ticks = sysconf(_SC_CLK_TCK);
    FILE *fp;

    if ((fp = fopen("/proc/self/statm", "r"))) {
        unsigned long size, resident;
        if (fscanf(fp, "%lu %lu", &size, &resident) == 2)
            ap_metric_set(ins->resident_memory, (double)resident * (double)page);
        fclose(fp);
    }
    if ((fp = fopen("/proc/self/stat", "r"))) {
        char line[1024];
        unsigned long utime, stime;
        /* Fields after the command name, which may hold spaces: start after its ')'. */
        char *p = fgets(line, sizeof line, fp) ? strrchr(line, ')') : NULL;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                        &stime) == 2 && ticks > 0)
            ap_metric_set(ins->cpu_seconds, (double)(utime + stime) / (double)ticks);
        fclose(fp);
    }
    DIR *dir = opendir("/proc/self/fd");
    if (dir) {
        int n = -1; /* not counting the one opendir uses */
        while (readdir(dir))
            n++;
        closedir(dir);
        ap_metric_set(ins->open_fds, n - 2); /* "." and ".." */
    }
}

bool ap_instruments_init(ap_instruments_t *ins)
{
    memset(ins, 0, sizeof *ins);
    ap_metrics_t *m = ins->registry = ap_metrics_new();
    if (!m)
        return false;

    ins->commands = ap_metrics_counter(m, "allocation_commands_total",
        "Commands read, by command type and outcome (applied, rejected, dead_lettered, "
        "failed, duplicate).", "type,outcome");
    ins->batch_commands = ap_metrics_histogram(m, "allocation_batch_commands",
        "Commands per batch (one Postgres transaction).", NULL, batch_buckets, N(batch_buckets));
    ins->batch_duration = ap_metrics_histogram(m, "allocation_batch_duration_seconds",
        "Time from a batch's first attempt to its commit.", NULL, duration_buckets,
        N(duration_buckets));
    ins->consumer_lag = ap_metrics_gauge(m, "allocation_consumer_lag_messages",
        "Records of an owned partition not applied yet: its end offset minus the offset "
        "stored in Postgres.", "topic,partition");
    ins->outbox_rows = ap_metrics_gauge(m, "allocation_outbox_backlog_rows",
        "Outbox rows waiting for the relay (counted up to BACKPRESSURE_MAX_ROWS + 1).", NULL);
    ins->outbox_age = ap_metrics_gauge(m, "allocation_outbox_oldest_age_seconds",
        "Age of the oldest outbox row waiting for the relay.", NULL);

    ins->event_latency = ap_metrics_histogram(m, "allocation_event_delivery_latency_seconds",
        "Time from an event's commit to Kafka's acknowledgement, as this process's relay "
        "saw it.", NULL, duration_buckets, N(duration_buckets));
    ins->relay_delivered = ap_metrics_counter(m, "allocation_relay_delivered_total",
        "Outbox rows this process's relay delivered to Kafka and deleted.", NULL);
    ins->relay_failures = ap_metrics_counter(m, "allocation_relay_delivery_failures_total",
        "Failed delivery reports (the row stays and is sent again).", NULL);
    ins->relay_parked = ap_metrics_counter(m, "allocation_relay_parked_total",
        "Outbox rows Kafka refused for good, moved to outbox_parked.", NULL);
    ins->relay_leader = ap_metrics_gauge(m, "allocation_relay_leader",
        "1 while this process holds the relay lock (its relay is the active one).", NULL);

    ins->email_delivered = ap_metrics_counter(m, "allocation_email_deliveries_total",
        "Out-of-stock emails the SMTP server accepted (their rows deleted).", NULL);
    ins->email_failures = ap_metrics_counter(m, "allocation_email_failures_total",
        "Failed SMTP attempts (the email stays and is tried again).", NULL);
    ins->email_logged = ap_metrics_counter(m, "allocation_email_logged_total",
        "Out-of-stock emails written to the log because SMTP_URL is not set.", NULL);

    ins->backpressure = ap_metrics_gauge(m, "allocation_backpressure_active",
        "1 while consumption is paused because the outbox is behind.", NULL);
    ins->postgres_up = ap_metrics_gauge(m, "allocation_postgres_up",
        "1 while Postgres is reachable.", NULL);
    ins->kafka_up = ap_metrics_gauge(m, "allocation_kafka_up",
        "1 while a Kafka broker is reachable.", NULL);
    ins->consumer_joined = ap_metrics_gauge(m, "allocation_consumer_group_joined",
        "1 while the consumer is a member of its group.", NULL);

    ins->http_requests = ap_metrics_counter(m, "allocation_http_requests_total",
        "HTTP requests answered, by route and status code.", "route,code");
    ins->http_duration = ap_metrics_histogram(m, "allocation_http_request_duration_seconds",
        "Time to answer an HTTP request, by route.", "route", duration_buckets,
        N(duration_buckets));

    ins->build_info = ap_metrics_gauge(m, "allocation_build_info",
        "Always 1; the version is a label.", "version");
    ins->resident_memory = ap_metrics_gauge(m, "process_resident_memory_bytes",
        "Resident memory size in bytes.", NULL);
    ins->cpu_seconds = ap_metrics_counter(m, "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.", NULL);
    ins->start_time = ap_metrics_gauge(m, "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.", NULL);
    ins->open_fds = ap_metrics_gauge(m, "process_open_fds", "Number of open file descriptors.",
                                     NULL);

    if (!ins->commands || !ins->batch_commands || !ins->batch_duration || !ins->consumer_lag ||
        !ins->outbox_rows || !ins->outbox_age || !ins->event_latency ||
        !ins->relay_delivered || !ins->relay_failures || !ins->relay_parked ||
        !ins->relay_leader || !ins->email_delivered || !ins->email_failures ||
        !ins->email_logged || !ins->backpressure || !ins->postgres_up || !ins->kafka_up ||
        !ins->consumer_joined || !ins->http_requests || !ins->http_duration ||
        !ins->build_info || !ins->resident_memory || !ins->cpu_seconds || !ins->start_time ||
        !ins->open_fds) {
        ap_instruments_release(ins);
        return false;
    }
    ap_metric_set(ins->build_info, 1, AP_VERSION);
    ap_metric_set(ins->start_time, (double)time(NULL));
    ap_metric_set(ins->outbox_rows, 0);
    ap_metric_set(ins->outbox_age, 0);
    ap_metric_set(ins->relay_delivered, 0);
    ap_metric_set(ins->relay_failures, 0);
    ap_metric_set(ins->relay_parked, 0);
    ap_metrics_on_collect(m, collect_process, ins);
    return true;
}

void ap_instruments_release(ap_instruments_t *ins)
{
    ap_metrics_free(ins->registry);
    memset(ins, 0, sizeof *ins);
}
