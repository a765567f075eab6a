/*
 * instruments.c - the processor's metric families (instruments.h), and the collector of the
 * process's own figures (resident memory, CPU, open files) from /proc.
 */
#include "entrypoints/instruments.h"

#include <dirent.h>
#include <stddef.h>
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

/* One family: where its handle goes in ap_instruments_t, and what Prometheus is told. */
typedef struct family {
    size_t field; /* offsetof an ap_metric_t * in ap_instruments_t */
    enum { COUNTER, GAUGE, HISTOGRAM } kind;
    const char *name, *help, *labels;
    const double *buckets; /* histograms only */
    size_t nbuckets;
} family_t;

#define AT(member) offsetof(ap_instruments_t, member)
#define BATCHES batch_buckets, N(batch_buckets)
#define SECONDS duration_buckets, N(duration_buckets)

/* Every family, in the order /metrics lists them. */
static const family_t families[] = {
    {AT(commands), COUNTER, "allocation_commands_total",
     "Commands read, by command type and outcome (applied, rejected, dead_lettered, "
     "failed, duplicate).", "type,outcome"},
    {AT(batch_commands), HISTOGRAM, "allocation_batch_commands",
     "Commands per batch (one Postgres transaction).", NULL, BATCHES},
    {AT(batch_duration), HISTOGRAM, "allocation_batch_duration_seconds",
     "Time from a batch's first attempt to its commit.", NULL, SECONDS},
    {AT(consumer_lag), GAUGE, "allocation_consumer_lag_messages",
     "Records of an owned partition not applied yet: its end offset minus the offset "
     "stored in Postgres.", "topic,partition"},
    {AT(outbox_rows), GAUGE, "allocation_outbox_backlog_rows",
     "Outbox rows waiting for the relay (counted up to BACKPRESSURE_MAX_ROWS + 1).", NULL},
    {AT(outbox_age), GAUGE, "allocation_outbox_oldest_age_seconds",
     "Age of the oldest outbox row waiting for the relay.", NULL},

    {AT(event_latency), HISTOGRAM, "allocation_event_delivery_latency_seconds",
     "Time from an event's commit to Kafka's acknowledgement, as this process's relay "
     "saw it.", NULL, SECONDS},
    {AT(relay_delivered), COUNTER, "allocation_relay_delivered_total",
     "Outbox rows this process's relay delivered to Kafka and deleted.", NULL},
    {AT(relay_failures), COUNTER, "allocation_relay_delivery_failures_total",
     "Failed delivery reports (the row stays and is sent again).", NULL},
    {AT(relay_parked), COUNTER, "allocation_relay_parked_total",
     "Outbox rows Kafka refused for good, moved to outbox_parked.", NULL},
    {AT(relay_leader), GAUGE, "allocation_relay_leader",
     "1 while this process holds the relay lock (its relay is the active one).", NULL},

    {AT(email_delivered), COUNTER, "allocation_email_deliveries_total",
     "Out-of-stock emails the SMTP server accepted (their rows deleted).", NULL},
    {AT(email_failures), COUNTER, "allocation_email_failures_total",
     "Failed SMTP attempts (the email stays and is tried again).", NULL},
    {AT(email_logged), COUNTER, "allocation_email_logged_total",
     "Out-of-stock emails written to the log because SMTP_URL is not set.", NULL},

    {AT(backpressure), GAUGE, "allocation_backpressure_active",
     "1 while consumption is paused because the outbox is behind.", NULL},
    {AT(postgres_up), GAUGE, "allocation_postgres_up", "1 while Postgres is reachable.", NULL},
    {AT(kafka_up), GAUGE, "allocation_kafka_up", "1 while a Kafka broker is reachable.", NULL},
    {AT(consumer_joined), GAUGE, "allocation_consumer_group_joined",
     "1 while the consumer is a member of its group.", NULL},

    {AT(http_requests), COUNTER, "allocation_http_requests_total",
     "HTTP requests answered, by route and status code.", "route,code"},
    {AT(http_duration), HISTOGRAM, "allocation_http_request_duration_seconds",
     "Time to answer an HTTP request, by route.", "route", SECONDS},

    {AT(build_info), GAUGE, "allocation_build_info", "Always 1; the version is a label.",
     "version"},
    {AT(resident_memory), GAUGE, "process_resident_memory_bytes",
     "Resident memory size in bytes.", NULL},
    {AT(cpu_seconds), COUNTER, "process_cpu_seconds_total",
     "Total user and system CPU time spent in seconds.", NULL},
    {AT(start_time), GAUGE, "process_start_time_seconds",
     "Start time of the process since unix epoch in seconds.", NULL},
    {AT(open_fds), GAUGE, "process_open_fds", "Number of open file descriptors.", NULL},
};

static ap_metric_t *family_register(ap_metrics_t *m, const family_t *f)
{
    switch (f->kind) {
    case COUNTER:
        return ap_metrics_counter(m, f->name, f->help, f->labels);
    case GAUGE:
        return ap_metrics_gauge(m, f->name, f->help, f->labels);
    case HISTOGRAM:
        return ap_metrics_histogram(m, f->name, f->help, f->labels, f->buckets, f->nbuckets);
    }
    return NULL;
}

bool ap_instruments_init(ap_instruments_t *ins)
{
    memset(ins, 0, sizeof *ins);
    ap_metrics_t *m = ins->registry = ap_metrics_new();
    if (!m)
        return false;

    for (size_t i = 0; i < N(families); i++) {
        ap_metric_t **slot = (ap_metric_t **)((char *)ins + families[i].field);
        if (!(*slot = family_register(m, &families[i]))) {
            ap_instruments_release(ins);
            return false;
        }
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
