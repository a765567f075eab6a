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

#define BATCHES batch_buckets, N(batch_buckets)
#define SECONDS duration_buckets, N(duration_buckets)
#define NO_BUCKETS NULL, 0
#define FAMILY(field, kind, name, labels, buckets, help)                                       \
    {offsetof(ap_instruments_t, field), kind, name, help, labels, buckets},

static const family_t families[] = {AP_INSTRUMENTS(FAMILY)};

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
