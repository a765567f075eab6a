/*
 * bench_e2e.c - end-to-end throughput and latency of a running allocation-processor, through
 * real Kafka ($KAFKA_BOOTSTRAP_SERVERS) and the processor's PostgreSQL. A program that prints
 * numbers, not a test: it asserts nothing about them (it exits 1 only when events are missing
 * or unexpected ones arrive, since then the numbers mean nothing).
 *
 *   bench_e2e [COMMANDS [RATE [SECONDS [SKUS]]]]    defaults: 100000, 1000/s, 20 s, 1000 skus
 *
 * run_bench.sh deletes the run's topics afterwards with tests/tools/test_delete_topics.c.
 *
 * Environment: KAFKA_BOOTSTRAP_SERVERS (required); TOPIC_PREFIX (the processor's, default
 * `allocation`); optional DATABASE_URL and KAFKA_GROUP_ID (the processor's: a timeline of
 * commands applied and outbox rows waiting, read once a second); optional BENCH_PROCESSOR_PID
 * (its memory and per-thread CPU); BATCH_MAX_MESSAGES, BATCH_MAX_WAIT_MS and
 * BACKPRESSURE_MAX_* are only printed (set them on the processor); BENCH_LATENCY_CSV (a file
 * to write each latency-phase command's send time and latency to).
 *
 * Commands are JSON, as a person with kcat would send them, keyed by sku, each with a
 * `message-id` header "<run tag>:<sequence>"; the processor copies it into every event's
 * `causation-id`, which is how an event is matched to its command. The mix is built so that
 * every command yields exactly one event:
 *   - warm-up: one CreateBatch, waited for (the processor has joined its group and relays);
 *   - setup: per sku a warehouse batch (qty 100) and a shipment (qty 1,000,000, eta
 *     2030-01-01) -> BatchCreated each;
 *   - throughput: COMMANDS commands over uniformly random skus, 2% ChangeBatchQuantity
 *     (raising the warehouse batch, so no line is ever deallocated) -> BatchQuantityChanged,
 *     the rest Allocate of 1..10 units with a unique orderid -> Allocated (into the warehouse
 *     batch while it has room, then the shipment; never OutOfStock). Produced as fast as the
 *     producer takes them; commands/s = COMMANDS over the time from the first send to the
 *     moment the benchmark's consumer has read the last of their events;
 *   - latency: the same mix at RATE commands/s for SECONDS, sent one at a time on a fixed
 *     schedule (linger.ms=0); per command, the time from the send call to the benchmark's
 *     consumer reading its event.
 * Topics are the processor's: <prefix>.commands in, <prefix>.events.* and
 * <prefix>.dead_letter out (every one is read, so a rejection or dead letter is noticed).
 */
#include <ctype.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "support.h"
#include "ap/config.h"
#include "ap/log.h"
#include "ap/kafka_producer.h"

#define CHANGE_PERCENT 2
#define WAREHOUSE_QTY 100
#define SHIPMENT_QTY 1000000
#define STALL_S 60 /* give up when no expected event arrives for this long */

enum { T_BATCH_CREATED, T_BATCH_QUANTITY_CHANGED, T_ALLOCATED, T_DEALLOCATED, T_OUT_OF_STOCK,
       T_COMMAND_REJECTED, T_DEAD_LETTER, NTOPICS };
static const char *const topic_suffix[NTOPICS] = {
    ".events.batch_created", ".events.batch_quantity_changed", ".events.allocated",
    ".events.deallocated",   ".events.out_of_stock",           ".events.command_rejected",
    ".dead_letter"};

static const char *kafka_servers, *prefix;
static char out_topics[NTOPICS][300], command_topic[300], tag[32];
static pid_t processor_pid;



static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_e2e: %s: %s\n", what, why);
    exit(1);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void)
{
    /* xorshift64*: a fixed seed, so every run sends the same mix. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* ---------------------------------------------------------------- the run's state */

typedef struct cmd {
    char key[64];
    char value[256];
    int key_len, value_len;
} cmd_t;

static size_t total;          /* sequence numbers 0 .. total-1 */
static uint8_t *expect;       /* topic index of each command's event */
static long long *sent_us;    /* written by the main thread */
static atomic_llong *seen_us; /* written by the reader: first sight of the expected event */
static atomic_ulong got;      /* expected events seen (first sightings) */
static atomic_ulong per_topic[NTOPICS], unexpected, duplicates, foreign;
static atomic_bool reader_ready, reader_stop;

static int *change_count; /* per sku: ChangeBatchQuantity sent so far */
static int nskus;

static void sku_name(int s, char *buf, size_t len)
{
    snprintf(buf, len, "SKU-%s-%04d", tag, s);
}

/* Builds command `seq`: warm-up, setup or one of the mix. */
static void make_create(cmd_t *c, size_t seq, const char *sku, const char *ref, long qty,
                        const char *eta)
{
    c->key_len = snprintf(c->key, sizeof c->key, "%s", sku);
    if (eta)
        c->value_len = snprintf(c->value, sizeof c->value,
                                "{\"type\":\"CreateBatch\",\"ref\":\"%s\",\"sku\":\"%s\","
                                "\"qty\":%ld,\"eta\":\"%s\"}",
                                ref, sku, qty, eta);
    else
        c->value_len = snprintf(c->value, sizeof c->value,
                                "{\"type\":\"CreateBatch\",\"ref\":\"%s\",\"sku\":\"%s\","
                                "\"qty\":%ld,\"eta\":null}",
                                ref, sku, qty);
    expect[seq] = T_BATCH_CREATED;
}

static void make_mixed(cmd_t *c, size_t seq)
{
    int s = (int)(rng() % (uint64_t)nskus);
    char sku[64];
    sku_name(s, sku, sizeof sku);
    c->key_len = snprintf(c->key, sizeof c->key, "%s", sku);
    if (rng() % 100 < CHANGE_PERCENT) {
        /* Only ever raised: no line leaves, so the event count stays exact. */
        long qty = WAREHOUSE_QTY + 50L * ++change_count[s];
        c->value_len = snprintf(c->value, sizeof c->value,
                                "{\"type\":\"ChangeBatchQuantity\",\"ref\":\"w-%s-%04d\","
                                "\"qty\":%ld}",
                                tag, s, qty);
        expect[seq] = T_BATCH_QUANTITY_CHANGED;
    } else {
        c->value_len = snprintf(c->value, sizeof c->value,
                                "{\"type\":\"Allocate\",\"orderid\":\"o-%s-%zu\",\"sku\":\"%s\","
                                "\"qty\":%d}",
                                tag, seq, sku, 1 + (int)(rng() % 10));
        expect[seq] = T_ALLOCATED;
    }
}

/* ---------------------------------------------------------------- Kafka */

static rd_kafka_t *kafka_client(rd_kafka_type_t type, const char *group)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", kafka_servers, errstr, sizeof errstr) ||
        (group && (rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr) ||
                   rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                                     sizeof errstr) ||
                   rd_kafka_conf_set(conf, "fetch.wait.max.ms", "50", errstr, sizeof errstr))))
        die("kafka config", errstr);
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (!rk)
        die("kafka client", errstr);
    return rk;
}

/* Partitions of `topic`, waiting up to `wait_s` for the processor to create it. */
static int partitions_of(rd_kafka_t *rk, const char *topic, int wait_s)
{
    long long deadline = ap_test_now_us() + (long long)wait_s * 1000000;
    for (;;) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        int n = 0;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (md->topic_cnt == 1 && !md->topics[0].err)
                n = md->topics[0].partition_cnt;
            rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(rkt);
        if (n > 0)
            return n;
        if (ap_test_now_us() > deadline)
            die(topic, "no such topic (is the processor running with this TOPIC_PREFIX?)");
        ap_test_pause_ms(500);
    }
}

static void *reader_main(void *arg)
{
    (void)arg;
    char group[200];
    snprintf(group, sizeof group, "%s-bench-reader-%s", prefix, tag);
    rd_kafka_t *rk = kafka_client(RD_KAFKA_CONSUMER, group);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(NTOPICS * 8);
    for (int t = 0; t < NTOPICS; t++) {
        int n = partitions_of(rk, out_topics[t], 120);
        for (int p = 0; p < n; p++)
            rd_kafka_topic_partition_list_add(parts, out_topics[t], p)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
    }
    if (rd_kafka_assign(rk, parts))
        die("assign", "failed");
    rd_kafka_topic_partition_list_destroy(parts);
    atomic_store(&reader_ready, true);

    size_t taglen = strlen(tag);
    while (!atomic_load(&reader_stop)) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 50);
        if (!msg)
            continue;
        long long t = ap_test_now_us();
        rd_kafka_headers_t *hdrs = NULL;
        const void *val = NULL;
        size_t len = 0;
        if (msg->err || rd_kafka_message_headers(msg, &hdrs) ||
            rd_kafka_header_get_last(hdrs, "causation-id", &val, &len) || !val ||
            len <= taglen + 1 || len > 64 || memcmp(val, tag, taglen) != 0 ||
            ((const char *)val)[taglen] != ':') {
            if (!msg->err)
                atomic_fetch_add(&foreign, 1); /* another run's, or one without our header */
            rd_kafka_message_destroy(msg);
            continue;
        }
        char text[72];
        memcpy(text, (const char *)val + taglen + 1, len - taglen - 1);
        text[len - taglen - 1] = '\0';
        char *end;
        unsigned long long seq = strtoull(text, &end, 10);
        const char *topic = rd_kafka_topic_name(msg->rkt);
        int ti = -1;
        for (int i = 0; i < NTOPICS; i++)
            if (strcmp(topic, out_topics[i]) == 0)
                ti = i;
        if (ti >= 0)
            atomic_fetch_add(&per_topic[ti], 1);
        if (*end || seq >= total || ti != expect[seq]) {
            atomic_fetch_add(&unexpected, 1);
        } else if (atomic_load_explicit(&seen_us[seq], memory_order_relaxed)) {
            atomic_fetch_add(&duplicates, 1); /* at-least-once: a re-delivery */
        } else {
            atomic_store_explicit(&seen_us[seq], t, memory_order_relaxed);
            atomic_fetch_add(&got, 1);
        }
        rd_kafka_message_destroy(msg);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return NULL;
}

/* Delivery reports of our commands. */
static atomic_ulong acked, failed;
static void on_delivery(void *ctx, void *opaque, ap_err_t err, const char *reason)
{
    (void)ctx;
    (void)opaque;
    if (err) {
        if (atomic_fetch_add(&failed, 1) == 0)
            fprintf(stderr, "bench_e2e: a command was not delivered: %s\n", reason);
    } else {
        atomic_fetch_add(&acked, 1);
    }
}

static void send_cmd(ap_producer_t *producer, const cmd_t *c, size_t seq)
{
    char id[96];
    int idlen = snprintf(id, sizeof id, "%s:%zu", tag, seq);
    ap_header_t header = {"message-id", 10, id, (size_t)idlen};
    for (;;) {
        sent_us[seq] = ap_test_now_us();
        ap_err_t err = ap_producer_send(producer, command_topic, c->key, (size_t)c->key_len,
                                        c->value, (size_t)c->value_len, &header, 1, NULL);
        if (err == AP_OK)
            return;
        if (err != AP_ERR_UNAVAILABLE)
            die("produce", ap_strerror(err));
        ap_producer_poll(producer, 5); /* local queue full */
    }
}

/* ---------------------------------------------------------------- observation */

/* The processor's database, when given: commands applied (offsets stored) and outbox rows. */
static PGconn *db;
static const char *group_id;

static void db_sample(long long *applied, long long *outbox_rows)
{
    *applied = *outbox_rows = -1;
    if (!db)
        return;
    if (PQstatus(db) != CONNECTION_OK)
        PQreset(db); /* Postgres was restarted under us */
    const char *params[] = {group_id, command_topic};
    PGresult *res = PQexecParams(db,
                                 "SELECT (SELECT coalesce(sum(greatest(next_offset, 0)), 0) "
                                 "        FROM consumer_offsets WHERE group_id = $1 "
                                 "        AND topic = $2), "
                                 "       (SELECT count(*) FROM outbox)",
                                 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        *applied = atoll(PQgetvalue(res, 0, 0));
        *outbox_rows = atoll(PQgetvalue(res, 0, 1));
    }
    PQclear(res);
}

/* CPU time of every process (and of the processor's threads), read from /proc. */
enum { C_PROCESSOR, C_PG_OURS, C_PG_SHARED, C_PG_OTHER, C_KAFKA, C_BENCH, C_OTHER, NCLASSES };
static const char *const class_name[NCLASSES] = {
    "processor", "postgres backends of its database", "postgres wal/checkpoint/vacuum",
    "postgres other backends", "kafka (java)", "bench_e2e", "other"};
static char our_db[128]; /* the processor's database: its backends are counted apart */

/* Which Postgres process: a backend of our database, one of another, or a shared one. */
static int postgres_class(int pid)
{
    char path[64], cmd[256];
    snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return C_PG_SHARED;
    size_t n = fread(cmd, 1, sizeof cmd - 1, f);
    fclose(f);
    cmd[n] = '\0';
    /* "postgres: USER DB HOST(PORT) STATE" for a backend; "postgres: walwriter" etc. */
    char user[64], dbname[128];
    if (sscanf(cmd, "postgres: %63s %127s %*s", user, dbname) == 2 && strchr(cmd, '(')) {
        if (our_db[0] && strcmp(dbname, our_db) == 0)
            return C_PG_OURS;
        return C_PG_OTHER;
    }
    return C_PG_SHARED;
}
#define MAX_ENTRIES 4096
typedef struct cpu_entry {
    int id;
    int cls;             /* a class, or for threads unused */
    char name[24];       /* thread name */
    unsigned long long ticks;
} cpu_entry_t;
typedef struct cpu_snap {
    long long at_us;
    unsigned long long total, idle; /* /proc/stat, all CPUs */
    cpu_entry_t procs[MAX_ENTRIES];
    size_t nprocs;
    cpu_entry_t threads[256];
    size_t nthreads;
} cpu_snap_t;

/* utime+stime and comm of /proc/.../stat; false when it vanished. */
static bool read_stat(const char *path, char *comm, size_t commlen, unsigned long long *ticks)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    if (!open || !close)
        return false;
    size_t clen = (size_t)(close - open - 1);
    if (clen >= commlen)
        clen = commlen - 1;
    memcpy(comm, open + 1, clen);
    comm[clen] = '\0';
    /* Fields after the comm: state(3) ... utime(14) stime(15). */
    unsigned long long ut = 0, st = 0;
    char *p = close + 2;
    for (int field = 3; field < 14 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    if (!p || sscanf(p, "%llu %llu", &ut, &st) != 2)
        return false;
    *ticks = ut + st;
    return true;
}

static void cpu_snapshot(cpu_snap_t *s)
{
    s->at_us = ap_test_now_us();
    s->nprocs = s->nthreads = 0;
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[10] = {0};
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) != 8)
            memset(v, 0, sizeof v);
        fclose(f);
    }
    s->total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    s->idle = v[3] + v[4];

    DIR *dir = opendir("/proc");
    struct dirent *de;
    char path[300], comm[64];
    pid_t self = getpid();
    while (dir && (de = readdir(dir)) && s->nprocs < MAX_ENTRIES) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        int pid = atoi(de->d_name);
        unsigned long long ticks;
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        if (!read_stat(path, comm, sizeof comm, &ticks))
            continue;
        int cls = pid == processor_pid          ? C_PROCESSOR
                  : pid == self                 ? C_BENCH
                  : strcmp(comm, "postgres") == 0 ? postgres_class(pid)
                  : strcmp(comm, "java") == 0   ? C_KAFKA
                                                : C_OTHER;
        s->procs[s->nprocs++] = (cpu_entry_t){.id = pid, .cls = cls, .ticks = ticks};
    }
    if (dir)
        closedir(dir);

    if (processor_pid <= 0)
        return;
    snprintf(path, sizeof path, "/proc/%d/task", (int)processor_pid);
    dir = opendir(path);
    while (dir && (de = readdir(dir)) && s->nthreads < 256) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        int tid = atoi(de->d_name);
        unsigned long long ticks;
        snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)processor_pid, tid);
        if (!read_stat(path, comm, sizeof comm, &ticks))
            continue;
        cpu_entry_t *e = &s->threads[s->nthreads++];
        *e = (cpu_entry_t){.id = tid, .ticks = ticks};
        if (tid == processor_pid)
            snprintf(e->name, sizeof e->name, "main(consumer)");
        else if (strncmp(comm, "rdk:", 4) == 0)
            snprintf(e->name, sizeof e->name, "%.23s", comm); /* librdkafka's */
        else
            snprintf(e->name, sizeof e->name, "other(relay)");
    }
    if (dir)
        closedir(dir);
}

static unsigned long long ticks_before(const cpu_entry_t *list, size_t n, int id)
{
    for (size_t i = 0; i < n; i++)
        if (list[i].id == id)
            return list[i].ticks;
    return 0; /* started meanwhile */
}

/* Prints CPU use between two snapshots, as top does: 100% is one core. */
static void cpu_report(const char *phase, const cpu_snap_t *a, const cpu_snap_t *b)
{
    double hz = (double)sysconf(_SC_CLK_TCK);
    double secs = (double)(b->at_us - a->at_us) / 1e6;
    double ncpu = (double)sysconf(_SC_NPROCESSORS_ONLN);
    unsigned long long sum[NCLASSES] = {0};
    for (size_t i = 0; i < b->nprocs; i++) {
        unsigned long long before = ticks_before(a->procs, a->nprocs, b->procs[i].id);
        if (b->procs[i].ticks >= before)
            sum[b->procs[i].cls] += b->procs[i].ticks - before;
    }
    double busy = b->total > a->total
                      ? 100.0 * ncpu *
                            (1.0 - (double)(b->idle - a->idle) / (double)(b->total - a->total))
                      : 0;
    printf("%s cpu (%% of one core; the machine has %.0f%%): ", phase, 100.0 * ncpu);
    for (int c = 0; c < NCLASSES; c++)
        printf("%s %.0f%%, ", class_name[c], 100.0 * (double)sum[c] / hz / secs);
    printf("machine busy %.0f%%\n", busy);

    if (!b->nthreads)
        return;
    /* The processor's threads, grouped by name. */
    char names[64][24];
    unsigned long long tsum[64] = {0};
    int nn = 0;
    for (size_t i = 0; i < b->nthreads; i++) {
        unsigned long long before = ticks_before(a->threads, a->nthreads, b->threads[i].id);
        int k;
        for (k = 0; k < nn && strcmp(names[k], b->threads[i].name) != 0; k++)
            ;
        if (k == nn && nn < 64)
            snprintf(names[nn++], sizeof names[0], "%s", b->threads[i].name);
        if (k < nn && b->threads[i].ticks >= before)
            tsum[k] += b->threads[i].ticks - before;
    }
    printf("%s processor threads: ", phase);
    for (int k = 0; k < nn; k++)
        if (tsum[k])
            printf("%s %.0f%%  ", names[k], 100.0 * (double)tsum[k] / hz / secs);
    printf("\n");
}

static void memory_report(const char *phase)
{
    if (processor_pid <= 0)
        return;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)processor_pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("%s processor memory: /proc/%d is gone (did the processor exit?)\n", phase,
               (int)processor_pid);
        return;
    }
    long hwm = -1, rss = -1;
    while (fgets(line, sizeof line, f)) {
        sscanf(line, "VmHWM: %ld kB", &hwm);
        sscanf(line, "VmRSS: %ld kB", &rss);
    }
    fclose(f);
    printf("%s processor memory: VmRSS %.1f MiB, VmHWM %.1f MiB\n", phase, (double)rss / 1024,
           (double)hwm / 1024);
}

/* ---------------------------------------------------------------- phases */

/* Waits until every event of [from, to) was read; false (with a note) on a stall. */
static bool wait_events(size_t from, size_t to, bool timeline, ap_producer_t *producer)
{
    unsigned long target = (unsigned long)(to - from), done = 0;
    size_t next = from; /* events before it were all seen */
    long long last_progress = ap_test_now_us(), last_line = 0, start = ap_test_now_us();
    unsigned long last_got = atomic_load(&got);
    long long last_applied = -1;
    for (;;) {
        while (next < to && atomic_load_explicit(&seen_us[next], memory_order_relaxed))
            next++;
        done = 0;
        for (size_t i = next; i < to; i++)
            done += atomic_load_explicit(&seen_us[i], memory_order_relaxed) != 0;
        done += (unsigned long)(next - from);
        if (done >= target)
            break;
        ap_producer_poll(producer, 10);
        long long t = ap_test_now_us();
        unsigned long g = atomic_load(&got);
        if (g != last_got) {
            last_got = g;
            last_progress = t;
        }
        if (timeline && t - last_line >= 1000000) {
            long long applied, rows;
            db_sample(&applied, &rows);
            unsigned long a = atomic_load(&acked);
            double dt = last_line ? (double)(t - last_line) / 1e6 : 1;
            printf("  t=%5.1fs  commands acked %8lu  applied %8lld (%6.0f/s)  outbox rows "
                   "%7lld  events read %8lu\n",
                   (double)(t - start) / 1e6, a, applied,
                   last_applied >= 0 && applied >= 0 ? (double)(applied - last_applied) / dt : 0,
                   rows, g);
            fflush(stdout);
            last_applied = applied;
            last_line = t;
        }
        if (t - last_progress > (long long)STALL_S * 1000000) {
            printf("STALLED: no event for %d s; %lu of %lu read\n", STALL_S, done, target);
            return false;
        }
    }
    return true;
}

static long long last_seen(size_t from, size_t to)
{
    long long last = 0;
    for (size_t i = from; i < to; i++) {
        long long t = atomic_load(&seen_us[i]);
        if (t > last)
            last = t;
    }
    return last;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static double pct(const long long *sorted, size_t n, double p)
{
    size_t i = (size_t)((double)n * p);
    if (i >= n)
        i = n - 1;
    return (double)sorted[i] / 1000.0;
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

int main(int argc, char **argv)
{
    long commands = argc > 1 ? atol(argv[1]) : 100000;
    long rate = argc > 2 ? atol(argv[2]) : 1000;
    long seconds = argc > 3 ? atol(argv[3]) : 20;
    nskus = argc > 4 ? atoi(argv[4]) : 1000;
    kafka_servers = getenv("KAFKA_BOOTSTRAP_SERVERS");
    prefix = env_or("TOPIC_PREFIX", "allocation");
    processor_pid = (pid_t)atol(env_or("BENCH_PROCESSOR_PID", "0"));
    group_id = env_or("KAFKA_GROUP_ID", "allocation-processor");
    if (!kafka_servers || !*kafka_servers)
        die("environment", "KAFKA_BOOTSTRAP_SERVERS must be set");
    if (commands <= 0 || rate <= 0 || seconds <= 0 || nskus <= 0 || nskus > 100000)
        die("usage", "bench_e2e [COMMANDS [RATE [SECONDS [SKUS]]]]");
    ap_log_setup(AP_LOG_WARN, false);
    setvbuf(stdout, NULL, _IOLBF, 0);

    snprintf(tag, sizeof tag, "e%ldt%ld", (long)getpid(), (long)time(NULL) % 100000000);
    snprintf(command_topic, sizeof command_topic, "%s.commands", prefix);
    for (int t = 0; t < NTOPICS; t++)
        snprintf(out_topics[t], sizeof out_topics[t], "%s%s", prefix, topic_suffix[t]);
    const char *url = getenv("DATABASE_URL");
    if (url && *url) {
        db = PQconnectdb(url);
        snprintf(our_db, sizeof our_db, "%s", PQdb(db));
        if (PQstatus(db) != CONNECTION_OK) {
            fprintf(stderr, "bench_e2e: no timeline: %s", PQerrorMessage(db));
            PQfinish(db);
            db = NULL;
        }
    }

    size_t setup = 1 + 2 * (size_t)nskus, latency_n = (size_t)(rate * seconds);
    size_t mix_from = setup, mix_to = setup + (size_t)commands, lat_from = mix_to,
           lat_to = mix_to + latency_n;
    total = lat_to + 1; /* and one more: the latency producer's warm-up */
    expect = calloc(total, 1);
    sent_us = calloc(total, sizeof *sent_us);
    seen_us = calloc(total, sizeof *seen_us);
    change_count = calloc((size_t)nskus, sizeof *change_count);
    cmd_t *mix = calloc((size_t)commands, sizeof *mix);
    if (!expect || !sent_us || !seen_us || !change_count || !mix)
        die("memory", "out of memory");

    /* Parameters and the machine. */
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    char model[256] = "?", line[512];
    FILE *cpuinfo = fopen("/proc/cpuinfo", "r");
    while (cpuinfo && fgets(line, sizeof line, cpuinfo))
        if (sscanf(line, "model name : %255[^\n]", model) == 1)
            break;
    if (cpuinfo)
        fclose(cpuinfo);
    printf("bench_e2e: run %s, topics %s.*, %ld commands (%d%% ChangeBatchQuantity, the rest "
           "Allocate) over %d skus, then %ld commands/s for %ld s; JSON commands, Avro events\n",
           tag, prefix, commands, CHANGE_PERCENT, nskus, rate, seconds);
    printf("machine: %ld CPU(s) (%s); processor pid %ld; BATCH_MAX_MESSAGES=%s "
           "BATCH_MAX_WAIT_MS=%s BACKPRESSURE_MAX_ROWS=%s BACKPRESSURE_MAX_AGE_MS=%s%s\n",
           nproc, model, (long)processor_pid, env_or("BATCH_MAX_MESSAGES", "(default)"),
           env_or("BATCH_MAX_WAIT_MS", "(default)"), env_or("BACKPRESSURE_MAX_ROWS", "(default)"),
           env_or("BACKPRESSURE_MAX_AGE_MS", "(default)"),
#if defined(__SANITIZE_ADDRESS__)
           ", AddressSanitizer build of the benchmark"
#else
           ""
#endif
    );

    /* Producers: the throughput one batches (linger.ms=5, the wrapper's default); the latency
     * one sends each command at once. Both idempotent, acks=all. */
    ap_kv_t no_linger = {"linger.ms", "0"};
    ap_config_t cfg = {.bootstrap_servers = (char *)kafka_servers};
    ap_config_t cfg0 = {.bootstrap_servers = (char *)kafka_servers, .kafka = &no_linger,
                        .nkafka = 1};
    ap_producer_t *bulk = NULL, *single = NULL;
    if (ap_producer_new(&cfg, "bench-e2e", on_delivery, NULL, &bulk) ||
        ap_producer_new(&cfg0, "bench-e2e-latency", on_delivery, NULL, &single))
        die("producer", "cannot create");

    pthread_t reader;
    pthread_create(&reader, NULL, reader_main, NULL);
    while (!atomic_load(&reader_ready))
        ap_test_pause_ms(10);

    /* Warm-up: one command through the whole path. */
    char sku[64], ref[96];
    cmd_t c;
    long long t0 = ap_test_now_us();
    snprintf(sku, sizeof sku, "SKU-%s-warm", tag);
    snprintf(ref, sizeof ref, "w-%s-warm", tag);
    make_create(&c, 0, sku, ref, 10, NULL);
    send_cmd(bulk, &c, 0);
    if (!wait_events(0, 1, false, bulk))
        die("warm-up", "the processor did not answer");
    printf("warm-up: first event after %.1f ms\n", (double)(ap_test_now_us() - t0) / 1000);

    /* Setup: two batches per sku. */
    for (int s = 0; s < nskus; s++) {
        sku_name(s, sku, sizeof sku);
        snprintf(ref, sizeof ref, "w-%s-%04d", tag, s);
        make_create(&c, 1 + 2 * (size_t)s, sku, ref, WAREHOUSE_QTY, NULL);
        send_cmd(bulk, &c, 1 + 2 * (size_t)s);
        snprintf(ref, sizeof ref, "s-%s-%04d", tag, s);
        make_create(&c, 2 + 2 * (size_t)s, sku, ref, SHIPMENT_QTY, "2030-01-01");
        send_cmd(bulk, &c, 2 + 2 * (size_t)s);
    }
    if (!wait_events(1, setup, false, bulk))
        die("setup", "events missing");
    double setup_s = (double)(last_seen(1, setup) - sent_us[1]) / 1e6;
    printf("setup: %zu CreateBatch in %.2f s = %.0f commands/s\n", setup - 1, setup_s,
           (double)(setup - 1) / setup_s);

    /* 1. Throughput ------------------------------------------------------------------- */
    for (size_t i = 0; i < (size_t)commands; i++)
        make_mixed(&mix[i], mix_from + i);
    unsigned long allocs = 0;
    for (size_t i = mix_from; i < mix_to; i++)
        allocs += expect[i] == T_ALLOCATED;
    static cpu_snap_t cpu_a, cpu_b;
    cpu_snapshot(&cpu_a);
    unsigned long acked_before = atomic_load(&acked);
    printf("phase: throughput start\n");
    fflush(stdout);
    for (size_t i = 0; i < (size_t)commands; i++) {
        send_cmd(bulk, &mix[i], mix_from + i);
        ap_producer_poll(bulk, 0);
    }
    long long produced = ap_test_now_us();
    while (atomic_load(&acked) - acked_before < (unsigned long)commands && !atomic_load(&failed))
        ap_producer_poll(bulk, 10);
    long long all_acked = ap_test_now_us();
    bool complete = wait_events(mix_from, mix_to, true, bulk);
    cpu_snapshot(&cpu_b);
    printf("phase: throughput end\n");
    fflush(stdout);
    long long first = sent_us[mix_from], last = last_seen(mix_from, mix_to);
    double thr_s = (double)(last - first) / 1e6;
    unsigned long thr_events = 0;
    for (size_t i = mix_from; i < mix_to; i++)
        thr_events += atomic_load(&seen_us[i]) != 0;
    printf("throughput: %ld commands (%lu Allocate, %lu ChangeBatchQuantity) produced in %.2f "
           "s, acknowledged by Kafka in %.2f s\n",
           commands, allocs, (unsigned long)commands - allocs, (double)(produced - first) / 1e6,
           (double)(all_acked - first) / 1e6);
    printf("throughput: %lu of %ld events read %.2f s after the first command: %.0f commands/s, "
           "%.0f events/s end-to-end%s\n",
           thr_events, commands, thr_s, (double)commands / thr_s, (double)thr_events / thr_s,
           complete ? "" : " (INCOMPLETE)");
    cpu_report("throughput", &cpu_a, &cpu_b);
    memory_report("throughput");

    /* 2. Latency at a fixed rate ------------------------------------------------------ */
    if (complete) {
        cmd_t *lat_cmds = realloc(mix, latency_n * sizeof *mix);
        if (!lat_cmds)
            die("memory", "out of memory");
        mix = lat_cmds;
        for (size_t i = 0; i < latency_n; i++)
            make_mixed(&mix[i], lat_from + i);
        /* Warm the latency producer (its first send waits for metadata and its producer id:
         * close to a second), outside the measurement. */
        snprintf(sku, sizeof sku, "SKU-%s-warm2", tag);
        snprintf(ref, sizeof ref, "w-%s-warm2", tag);
        make_create(&c, lat_to, sku, ref, 10, NULL);
        send_cmd(single, &c, lat_to);
        if (!wait_events(lat_to, lat_to + 1, false, single))
            die("warm-up", "the latency producer's first command got no event");
        ap_test_pause_ms(1000); /* let the relay and the commit queue settle */
        cpu_snapshot(&cpu_a);
        long long period_ns = 1000000000LL / rate, behind_max = 0;
        struct timespec next;
        clock_gettime(CLOCK_MONOTONIC, &next);
        long long start_us = ap_test_now_us();
        for (size_t i = 0; i < latency_n; i++) {
            long long due = start_us + (long long)i * period_ns / 1000;
            long long t = ap_test_now_us();
            if (t - due > behind_max)
                behind_max = t - due;
            send_cmd(single, &mix[i], lat_from + i);
            ap_producer_poll(single, 0);
            next.tv_nsec += period_ns;
            while (next.tv_nsec >= 1000000000L) {
                next.tv_sec++;
                next.tv_nsec -= 1000000000L;
            }
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        }
        long long sent_end = ap_test_now_us();
        complete = wait_events(lat_from, lat_to, false, single);
        cpu_snapshot(&cpu_b);
        size_t m = 0;
        long long *lat = calloc(latency_n, sizeof *lat);
        for (size_t i = lat_from; i < lat_to; i++) {
            long long t = atomic_load(&seen_us[i]);
            if (t)
                lat[m++] = t - sent_us[i];
        }
        const char *csv = getenv("BENCH_LATENCY_CSV");
        FILE *out = csv && *csv ? fopen(csv, "w") : NULL;
        if (out) {
            /* Per command: when it was sent (ms into the phase) and its latency (ms). */
            fprintf(out, "seq,type,sent_ms,latency_ms\n");
            for (size_t i = lat_from; i < lat_to; i++) {
                long long t = atomic_load(&seen_us[i]);
                fprintf(out, "%zu,%s,%.3f,%.3f\n", i - lat_from,
                        expect[i] == T_ALLOCATED ? "Allocate" : "ChangeBatchQuantity",
                        (double)(sent_us[i] - start_us) / 1000,
                        t ? (double)(t - sent_us[i]) / 1000 : -1.0);
            }
            fclose(out);
        }
        qsort(lat, m, sizeof *lat, cmp_ll);
        printf("latency: %zu commands at %ld/s over %.1f s (sender at most %.1f ms behind its "
               "schedule); send -> event read: ",
               latency_n, rate, (double)(sent_end - start_us) / 1e6, (double)behind_max / 1000);
        if (m)
            printf("p50 %.1f ms, p99 %.1f ms, p999 %.1f ms, max %.1f ms", pct(lat, m, 0.5),
                   pct(lat, m, 0.99), pct(lat, m, 0.999), (double)lat[m - 1] / 1000);
        printf(" (%zu of %zu read)\n", m, latency_n);
        if ((double)rate > 0.7 * (double)commands / thr_s)
            printf("latency: NOTE the offered %ld/s is %.0f%% of the %.0f commands/s measured "
                   "above: near or past saturation, so these numbers mostly measure a queue\n",
                   rate, 100.0 * (double)rate * thr_s / (double)commands,
                   (double)commands / thr_s);
        cpu_report("latency", &cpu_a, &cpu_b);
        memory_report("latency");
        free(lat);
    }

    /* Anything else the processor said about our commands. */
    printf("events of this run by topic:");
    for (int t = 0; t < NTOPICS; t++)
        printf(" %s %lu", topic_suffix[t] + 1, atomic_load(&per_topic[t]));
    printf("; unexpected %lu, re-deliveries %lu, commands not delivered %lu\n",
           atomic_load(&unexpected), atomic_load(&duplicates), atomic_load(&failed));

    atomic_store(&reader_stop, true);
    pthread_join(reader, NULL);
    ap_producer_poll(bulk, 100);
    ap_producer_free(bulk);
    ap_producer_free(single);
    if (db)
        PQfinish(db);
    free(mix);
    free(expect);
    free(sent_us);
    free(seen_us);
    free(change_count);
    bool ok = complete && !atomic_load(&unexpected) && !atomic_load(&failed);
    return ok ? 0 : 1;
}
