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
 * to write each latency-phase command's send time and latency to, and the part of it up to
 * the relay's produce call, read from the event's Kafka timestamp; in the long run, one file
 * per probe beside it: x.csv gives x-probe1.csv, x-probe2.csv, ...). Each latency phase and
 * probe prints the wall-clock time it started at.
 *
 * Commands are JSON, as a person with kcat would send them, keyed by sku, each with a
 * `message-id` header "<run tag>:<sequence>"; the processor copies it into every event's
 * `causation-id`, which is how an event is matched to its command. The benchmark keeps a
 * small model of every sku's two batches, so it knows each command's first event (and counts
 * the rest a command causes: Deallocated, and the reallocations after it):
 *   - warm-up: one CreateBatch, waited for (the processor has joined its group and relays);
 *   - setup: per sku a warehouse batch (qty 100) and a shipment (eta 2030-01-01) ->
 *     BatchCreated each;
 *   - throughput: COMMANDS commands of the mix (BENCH_MIX, below). Produced as fast as the
 *     producer takes them; commands/s = COMMANDS over the time from the first send to the
 *     moment the benchmark's consumer has read the last of their events;
 *   - latency: the same mix at RATE commands/s for SECONDS, sent one at a time on a fixed
 *     schedule (linger.ms=0); per command, the time from the send call to the benchmark's
 *     consumer reading its event.
 * Topics are the processor's: <prefix>.commands in, <prefix>.events.* and
 * <prefix>.dead_letter out (every one is read, so a rejection or dead letter is noticed).
 *
 * BENCH_MIX chooses the mix:
 *   simple     (the default, the first one) uniformly random skus, shipments of 1,000,000;
 *              2% ChangeBatchQuantity raising the warehouse batch (no line ever leaves), the
 *              rest Allocate of 1..10 units with a unique orderid (never out of stock);
 *   realistic  Zipf-skewed skus (s = 1: the most popular sku gets about 1/H(n) of the traffic),
 *              shipments of 500; 78% Allocate of a new orderid, 5% an Allocate repeated
 *              (the identical line again: idempotent, no event while it is allocated), 15%
 *              ChangeBatchQuantity of the warehouse batch to its allocated quantity -25..+95
 *              (a decrease takes lines back, newest first, each allocated again: Deallocated,
 *              then Allocated or OutOfStock), 2% rejected (an unknown sku, or an unknown batch
 *              ref). Popular skus run out of stock: OutOfStock. A round ends with one new
 *              Allocate per sku, so every command before it has been processed when the last
 *              event arrives (a repeat that changes nothing has no event of its own).
 *
 * BENCH_MILLIONS=N (the long run): N rounds of BENCH_ROUND commands (default 1,000,000);
 * after each, a probe of BENCH_PROBE_S seconds (default 5) at RATE commands/s; then, unless
 * BENCH_SETTLE_S is 0, a wait of up to BENCH_SETTLE_S seconds (default 120) for the machine
 * to go quiet (settle) and a second probe like the first; and one line: the round's
 * throughput, the probes' p50/p99, the processor's VmRSS and VmHWM, and the sizes of the
 * tables and their indexes. At the end, the verdicts of the long-run targets.
 * Commands are made as they are sent, so memory is O(commands) bytes, not O(commands) lines.
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
#define REALISTIC_SHIPMENT_QTY 500
#define STALL_S 60 /* give up when no expected event arrives for this long */
#define T_NONE 0xFF /* a command with no event of its own (an idempotent repeat) */

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
static uint8_t *expect;       /* topic index of each command's first event, or T_NONE */
static uint8_t *allow;        /* bits: topics of the further events a command may cause */
static atomic_ulong further;  /* further events read (Deallocated, reallocations) */
static unsigned long expected_further[NTOPICS]; /* what the model says they should be */
static long long *sent_us;    /* written by the main thread */
static atomic_llong *seen_us; /* written by the reader: first sight of the expected event */
/* Written by the reader with seen_us: the event's Kafka timestamp (the relay's produce call,
 * in milliseconds of CLOCK_REALTIME) moved onto CLOCK_MONOTONIC, for the CSV's split of a
 * command's latency into before and after the relay. */
static long long *relayed_us;
static long long realtime_minus_monotonic_us;
static atomic_ulong got;      /* expected events seen (first sightings) */
static atomic_ulong per_topic[NTOPICS], unexpected, duplicates, foreign;
static atomic_bool reader_ready, reader_stop;

static int *change_count; /* per sku: ChangeBatchQuantity sent so far */
static int nskus;
static bool realistic;    /* BENCH_MIX=realistic */

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

static void make_allocate(cmd_t *c, const char *sku, size_t order, int qty)
{
    c->key_len = snprintf(c->key, sizeof c->key, "%s", sku);
    c->value_len = snprintf(c->value, sizeof c->value,
                            "{\"type\":\"Allocate\",\"orderid\":\"o-%s-%zu\",\"sku\":\"%s\","
                            "\"qty\":%d}",
                            tag, order, sku, qty);
}

static void make_change(cmd_t *c, const char *sku, const char *ref, long qty)
{
    c->key_len = snprintf(c->key, sizeof c->key, "%s", sku);
    c->value_len = snprintf(c->value, sizeof c->value,
                            "{\"type\":\"ChangeBatchQuantity\",\"ref\":\"%s\",\"qty\":%ld}", ref,
                            qty);
}

static void make_simple(cmd_t *c, size_t seq)
{
    int s = (int)(rng() % (uint64_t)nskus);
    char sku[64], ref[96];
    sku_name(s, sku, sizeof sku);
    if (rng() % 100 < CHANGE_PERCENT) {
        /* Only ever raised: no line leaves, so the event count stays exact. */
        snprintf(ref, sizeof ref, "w-%s-%04d", tag, s);
        make_change(c, sku, ref, WAREHOUSE_QTY + 50L * ++change_count[s]);
        expect[seq] = T_BATCH_QUANTITY_CHANGED;
    } else {
        make_allocate(c, sku, seq, 1 + (int)(rng() % 10));
        expect[seq] = T_ALLOCATED;
    }
}

/* ---------------------------------------------------------------- the realistic mix's model */

/* A sku's two batches as the processor holds them: [0] the warehouse (preferred), [1] the
 * shipment; lines in allocation order. An order's number is the sequence of the Allocate
 * that first sent it. */
typedef struct mline {
    uint32_t order;
    uint8_t qty;
} mline_t;
typedef struct mbatch {
    long purchased, allocated;
    mline_t *lines;
    size_t n, cap;
} mbatch_t;
#define RECENT 16
typedef struct msku {
    mbatch_t b[2];
    uint32_t recent[RECENT]; /* recent orders of this sku, for repeats */
    uint8_t recent_qty[RECENT];
    unsigned nrecent;
} msku_t;
static msku_t *skus_model;
static uint8_t *where;    /* per order: 0 not allocated, else 1 + the batch holding it */
static double *zipf_cdf;  /* P(sku <= i) */

static void model_setup(void)
{
    skus_model = calloc((size_t)nskus, sizeof *skus_model);
    zipf_cdf = calloc((size_t)nskus, sizeof *zipf_cdf);
    where = calloc(total, 1);
    if (!skus_model || !zipf_cdf || !where)
        die("memory", "out of memory");
    double h = 0;
    for (int i = 0; i < nskus; i++)
        h += 1.0 / (i + 1);
    double acc = 0;
    for (int i = 0; i < nskus; i++) {
        acc += 1.0 / (i + 1) / h;
        zipf_cdf[i] = acc;
        skus_model[i].b[0].purchased = WAREHOUSE_QTY;
        skus_model[i].b[1].purchased = REALISTIC_SHIPMENT_QTY;
    }
}

static int zipf_sku(void)
{
    double u = (double)(rng() >> 11) / 9007199254740992.0; /* [0, 1) */
    int lo = 0, hi = nskus - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (zipf_cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* The model's Allocate: the topic of its event, or T_NONE when the line is already there. */
static uint8_t model_allocate(msku_t *m, uint32_t order, uint8_t qty)
{
    if (where[order])
        return T_NONE;
    for (int i = 0; i < 2; i++) {
        mbatch_t *b = &m->b[i];
        if (b->purchased - b->allocated < qty)
            continue;
        if (b->n == b->cap) {
            b->cap = b->cap ? 2 * b->cap : 16;
            if (!(b->lines = realloc(b->lines, b->cap * sizeof *b->lines)))
                die("memory", "out of memory");
        }
        b->lines[b->n++] = (mline_t){order, qty};
        b->allocated += qty;
        where[order] = (uint8_t)(i + 1);
        return T_ALLOCATED;
    }
    return T_OUT_OF_STOCK;
}

/* The model's ChangeBatchQuantity of the warehouse: lines taken back newest first, each
 * allocated again in that order once all have left. Counts the further events. */
static void model_change(msku_t *m, long qty, size_t seq)
{
    mbatch_t *b = &m->b[0];
    mline_t left[256];
    size_t n = 0;
    b->purchased = qty;
    while (b->purchased < b->allocated && b->n > 0 && n < 256) {
        left[n] = b->lines[--b->n];
        b->allocated -= left[n].qty;
        where[left[n].order] = 0;
        n++;
    }
    expected_further[T_DEALLOCATED] += n;
    for (size_t i = 0; i < n; i++) {
        uint8_t t = model_allocate(m, left[i].order, left[i].qty);
        expected_further[t]++;
        allow[seq] |= (uint8_t)(1u << t);
    }
    if (n)
        allow[seq] |= 1u << T_DEALLOCATED;
}

static void make_realistic(cmd_t *c, size_t seq)
{
    int s = zipf_sku();
    msku_t *m = &skus_model[s];
    char sku[64], ref[96];
    sku_name(s, sku, sizeof sku);
    unsigned roll = (unsigned)(rng() % 100);
    if (roll < 2) { /* rejected: an unknown sku, or an unknown batch */
        if (roll == 0) {
            snprintf(sku, sizeof sku, "SKU-%s-nosuch", tag);
            make_allocate(c, sku, seq, 1);
        } else {
            snprintf(ref, sizeof ref, "nosuch-%s-%zu", tag, seq);
            make_change(c, sku, ref, 10);
        }
        expect[seq] = T_COMMAND_REJECTED;
    } else if (roll < 17) { /* the warehouse batch changes: -25..+95 around what it holds */
        long qty = m->b[0].allocated - 25 + (long)(rng() % 121);
        if (qty < 0)
            qty = 0;
        snprintf(ref, sizeof ref, "w-%s-%04d", tag, s);
        make_change(c, sku, ref, qty);
        expect[seq] = T_BATCH_QUANTITY_CHANGED;
        model_change(m, qty, seq);
    } else if (roll < 22 && m->nrecent > 0) { /* the identical line again */
        unsigned k = (unsigned)(rng() % (m->nrecent < RECENT ? m->nrecent : RECENT));
        make_allocate(c, sku, m->recent[k], m->recent_qty[k]);
        expect[seq] = model_allocate(m, m->recent[k], m->recent_qty[k]);
    } else {
        uint8_t qty = (uint8_t)(1 + rng() % 10);
        make_allocate(c, sku, seq, qty);
        expect[seq] = model_allocate(m, (uint32_t)seq, qty);
        m->recent[m->nrecent % RECENT] = (uint32_t)seq;
        m->recent_qty[m->nrecent % RECENT] = qty;
        m->nrecent++;
    }
}

/* A round's last commands in the realistic mix: one new Allocate per sku. */
static void make_closing(cmd_t *c, size_t seq, int s)
{
    char sku[64];
    sku_name(s, sku, sizeof sku);
    make_allocate(c, sku, seq, 1);
    expect[seq] = model_allocate(&skus_model[s], (uint32_t)seq, 1);
}

/* Command `seq`, the `i`th of a round of `n`. */
static void make_mixed(cmd_t *c, size_t seq, size_t i, size_t n)
{
    if (!realistic)
        make_simple(c, seq);
    else if (n > (size_t)nskus && i >= n - (size_t)nskus)
        make_closing(c, seq, (int)(i - (n - (size_t)nskus)));
    else
        make_realistic(c, seq);
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
        if (!*end && seq < total && ti >= 0 && ti != expect[seq] && (allow[seq] >> ti) & 1) {
            atomic_fetch_add(&further, 1); /* a Deallocated, or a reallocation after one */
        } else if (*end || seq >= total || ti != expect[seq]) {
            atomic_fetch_add(&unexpected, 1);
        } else if (atomic_load_explicit(&seen_us[seq], memory_order_relaxed)) {
            atomic_fetch_add(&duplicates, 1); /* at-least-once: a re-delivery */
        } else {
            rd_kafka_timestamp_type_t tstype;
            long long ts_ms = rd_kafka_message_timestamp(msg, &tstype);
            relayed_us[seq] = ts_ms > 0 ? ts_ms * 1000 - realtime_minus_monotonic_us : 0;
            atomic_store_explicit(&seen_us[seq], t, memory_order_release); /* publishes it */
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
        if (err == AP_OK && expect[seq] == T_NONE) {
            /* Nothing to wait for: a later command of its sku vouches for it. */
            atomic_store(&seen_us[seq], sent_us[seq]);
            atomic_fetch_add(&got, 1);
        }
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

/* All CPUs' ticks from /proc/stat, and those idle or waiting for I/O (0 and 0: unknown). */
static void machine_ticks(unsigned long long *all, unsigned long long *idle)
{
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) != 8)
            memset(v, 0, sizeof v);
        fclose(f);
    }
    *all = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    *idle = v[3] + v[4];
}

/* The machine's busy share between two readings of machine_ticks, 100% a core. */
static double machine_busy(unsigned long long total_a, unsigned long long idle_a,
                           unsigned long long total_b, unsigned long long idle_b)
{
    if (total_b <= total_a)
        return 0;
    return 100.0 * (double)sysconf(_SC_NPROCESSORS_ONLN) *
           (1.0 - (double)(idle_b - idle_a) / (double)(total_b - total_a));
}

static void cpu_snapshot(cpu_snap_t *s)
{
    s->at_us = ap_test_now_us();
    s->nprocs = s->nthreads = 0;
    machine_ticks(&s->total, &s->idle);

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
        /* The processor names its threads (ap-consumer-1, ap-relay, ...), librdkafka its own
         * (rdk:main, rdk:broker1, ...; one set per client, summed by name). */
        if (tid == processor_pid)
            snprintf(e->name, sizeof e->name, "main");
        else
            snprintf(e->name, sizeof e->name, "%.23s", comm);
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
    double busy = machine_busy(a->total, a->idle, b->total, b->idle);
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

/* ---------------------------------------------------------------- rounds and probes */

static ap_producer_t *bulk, *single;
static cpu_snap_t cpu_a, cpu_b;

/*
 * A throughput round: commands [from, from + n), made as they are sent, as fast as the
 * producer takes them, then waits for their events. Returns commands/s, 0 when incomplete.
 */
static double run_round(size_t from, size_t n, bool report)
{
    unsigned long acked_before = atomic_load(&acked), allocs = 0;
    cpu_snapshot(&cpu_a);
    printf("phase: throughput start\n");
    fflush(stdout);
    cmd_t c;
    for (size_t i = 0; i < n; i++) {
        make_mixed(&c, from + i, i, n);
        allocs += c.value[9] == 'A'; /* {"type":"Allocate" */
        send_cmd(bulk, &c, from + i);
        ap_producer_poll(bulk, 0);
    }
    long long produced = ap_test_now_us();
    while (atomic_load(&acked) - acked_before < (unsigned long)n && !atomic_load(&failed))
        ap_producer_poll(bulk, 10);
    long long all_acked = ap_test_now_us();
    bool complete = wait_events(from, from + n, report, bulk);
    cpu_snapshot(&cpu_b);
    printf("phase: throughput end\n");
    fflush(stdout);
    long long first = sent_us[from], last = last_seen(from, from + n);
    double thr_s = (double)(last - first) / 1e6;
    unsigned long events = 0;
    for (size_t i = from; i < from + n; i++)
        events += atomic_load(&seen_us[i]) != 0;
    if (report) {
        printf("throughput: %zu commands (%lu Allocate, %lu ChangeBatchQuantity) produced in "
               "%.2f s, acknowledged by Kafka in %.2f s\n",
               n, allocs, (unsigned long)n - allocs, (double)(produced - first) / 1e6,
               (double)(all_acked - first) / 1e6);
        printf("throughput: %lu of %zu events read %.2f s after the first command: %.0f "
               "commands/s, %.0f events/s end-to-end%s\n",
               events, n, thr_s, (double)n / thr_s, (double)events / thr_s,
               complete ? "" : " (INCOMPLETE)");
        cpu_report("throughput", &cpu_a, &cpu_b);
        memory_report("throughput");
    }
    return complete ? (double)n / thr_s : 0;
}

/* The latency producer's first send waits for metadata and its producer id (close to a
 * second): one command outside any measurement. */
static void warm_single(size_t seq)
{
    char sku[64], ref[96];
    cmd_t c;
    snprintf(sku, sizeof sku, "SKU-%s-warm2", tag);
    snprintf(ref, sizeof ref, "w-%s-warm2", tag);
    make_create(&c, seq, sku, ref, 10, NULL);
    send_cmd(single, &c, seq);
    if (!wait_events(seq, seq + 1, false, single))
        die("warm-up", "the latency producer's first command got no event");
    ap_test_pause_ms(1000); /* let the relay and the commit queue settle */
}

/*
 * Commands [from, from + n) at `rate` per second, one at a time on a fixed schedule; the
 * percentiles of send -> event read (commands with an event of their own). False when
 * events are missing. `report` prints the latency block; `csv` (NULL: none) gets every
 * command's send time and latency; `label` names the phase in the line with its start time
 * (to line it up with other clocks: Postgres's log, a broker's GC log).
 */
static bool run_probe(size_t from, size_t n, long rate, bool report, const char *label,
                      const char *csv, double *p50, double *p99)
{
    cmd_t c;
    cpu_snapshot(&cpu_a);
    long long period_ns = 1000000000LL / rate, behind_max = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    long long start_us = ap_test_now_us();
    printf("phase: %s start at %.3f s since the epoch\n", label,
           (double)(start_us + realtime_minus_monotonic_us) / 1e6);
    for (size_t i = 0; i < n; i++) {
        long long due = start_us + (long long)i * period_ns / 1000;
        make_mixed(&c, from + i, 0, 0);
        long long t = ap_test_now_us();
        if (t - due > behind_max)
            behind_max = t - due;
        send_cmd(single, &c, from + i);
        ap_producer_poll(single, 0);
        ap_test_sleep_next(&next, period_ns);
    }
    long long sent_end = ap_test_now_us();
    bool complete = wait_events(from, from + n, false, single);
    cpu_snapshot(&cpu_b);
    size_t m = 0;
    long long *lat = calloc(n ? n : 1, sizeof *lat);
    if (!lat)
        die("memory", "out of memory");
    for (size_t i = from; i < from + n; i++) {
        long long t = atomic_load(&seen_us[i]);
        if (t && expect[i] != T_NONE)
            lat[m++] = t - sent_us[i];
    }
    FILE *out = csv && *csv ? fopen(csv, "w") : NULL;
    if (out) {
        /* Per command: when it was sent (ms into the phase) and its latency (ms). */
        /* relayed_ms: send -> the relay's produce call, from the event's timestamp (whole
         * milliseconds of the wall clock: +-1 ms). */
        fprintf(out, "seq,first_event,sent_ms,latency_ms,relayed_ms\n");
        for (size_t i = from; i < from + n; i++) {
            long long t = atomic_load(&seen_us[i]);
            bool got_it = t && expect[i] != T_NONE;
            fprintf(out, "%zu,%s,%.3f,%.3f,%.3f\n", i - from,
                    expect[i] == T_NONE ? "none" : topic_suffix[expect[i]] + 1,
                    (double)(sent_us[i] - start_us) / 1000,
                    got_it ? (double)(t - sent_us[i]) / 1000 : -1.0,
                    got_it && relayed_us[i] ? (double)(relayed_us[i] - sent_us[i]) / 1000 : -1.0);
        }
        fclose(out);
    }
    qsort(lat, m, sizeof *lat, cmp_ll);
    *p50 = m ? pct(lat, m, 0.5) : -1;
    *p99 = m ? pct(lat, m, 0.99) : -1;
    if (report) {
        printf("latency: %zu commands at %ld/s over %.1f s (sender at most %.1f ms behind its "
               "schedule); send -> event read: ",
               n, rate, (double)(sent_end - start_us) / 1e6, (double)behind_max / 1000);
        if (m)
            printf("p50 %.1f ms, p99 %.1f ms, p999 %.1f ms, max %.1f ms", pct(lat, m, 0.5),
                   pct(lat, m, 0.99), pct(lat, m, 0.999), (double)lat[m - 1] / 1000);
        printf(" (%zu of %zu read)\n", m, n);
        cpu_report("latency", &cpu_a, &cpu_b);
        memory_report("latency");
    }
    free(lat);
    return complete;
}

/* The processor's VmRSS and VmHWM in KiB (-1 when unknown). */
static void processor_memory(long *rss, long *hwm)
{
    char path[64], line[256];
    *rss = *hwm = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)processor_pid);
    FILE *f = processor_pid > 0 ? fopen(path, "r") : NULL;
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "VmHWM: %ld kB", hwm);
        sscanf(line, "VmRSS: %ld kB", rss);
    }
    if (f)
        fclose(f);
}

/* The write model's and read model's tables: size of the heap and of the indexes, MiB. */
static void table_sizes(char *buf, size_t len)
{
    snprintf(buf, len, "?");
    if (!db)
        return;
    PGresult *res = PQexec(db,
                           "SELECT string_agg(format('%s %s+%s', c.relname,"
                           "         round(pg_table_size(c.oid) / 1048576.0, 1),"
                           "         round(pg_indexes_size(c.oid) / 1048576.0, 1)), ', '"
                           "         ORDER BY c.relname)"
                           "  FROM pg_class c"
                           " WHERE c.relkind = 'r' AND c.relname IN ('products', 'batches',"
                           "       'allocations', 'allocations_view', 'outbox',"
                           "       'command_outcomes', 'consumer_offsets')");
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        snprintf(buf, len, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
}

/* Dirty + Writeback of /proc/meminfo in MiB: what the kernel still has to write (-1: unknown). */
static double dirty_mib(void)
{
    char line[128];
    long kb, sum = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "Dirty: %ld kB", &kb) == 1 || sscanf(line, "Writeback: %ld kB", &kb) == 1)
            sum = (sum < 0 ? 0 : sum) + kb;
    }
    if (f)
        fclose(f);
    return sum < 0 ? -1 : (double)sum / 1024;
}

/* Autovacuum workers at work on any database (-1: unknown). */
static int autovacuum_workers(void)
{
    int n = -1;
    PGresult *res = db ? PQexec(db, "SELECT count(*) FROM pg_stat_activity"
                                    " WHERE backend_type = 'autovacuum worker'")
                       : NULL;
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        n = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

/*
 * Waits, up to `limit_s` seconds, for what a round leaves behind to finish: two seconds in a
 * row with the machine under 25% busy (100% being one core), no autovacuum worker (or none
 * known) and under 32 MiB for the kernel to write back. Prints how long it took and returns
 * the seconds waited.
 */
static double settle(long limit_s)
{
    long long start = ap_test_now_us();
    int quiet = 0, workers = -1;
    double busy = 0, dirty = -1;
    unsigned long long total_a, idle_a, total_b, idle_b;
    machine_ticks(&total_a, &idle_a);
    while (quiet < 2 && ap_test_now_us() - start < limit_s * 1000000LL) {
        ap_test_pause_ms(1000);
        machine_ticks(&total_b, &idle_b);
        busy = machine_busy(total_a, idle_a, total_b, idle_b);
        workers = autovacuum_workers();
        dirty = dirty_mib();
        quiet = busy < 25 && workers <= 0 && dirty < 32 ? quiet + 1 : 0;
        total_a = total_b;
        idle_a = idle_b;
    }
    double waited = (double)(ap_test_now_us() - start) / 1e6;
    printf("settle: %s after %.0f s (machine %.0f%% busy, %d autovacuum workers, %.0f MiB to "
           "write back)\n",
           quiet >= 2 ? "quiet" : "NOT quiet, gave up", waited, busy, workers, dirty);
    fflush(stdout);
    return waited;
}

/*
 * A probe's latency file: BENCH_LATENCY_CSV x.csv gives x-probe<r>.csv, and x-probe<r>-settled.csv
 * for the probe after settling ("" when not asked for).
 */
static void probe_csv(char *csv, size_t len, int round, const char *suffix)
{
    const char *base = getenv("BENCH_LATENCY_CSV");
    csv[0] = '\0';
    if (base && *base) {
        int stem = (int)strlen(base) - (strstr(base, ".csv") ? 4 : 0);
        snprintf(csv, len, "%.*s-probe%d%s.csv", stem, base, round, suffix);
    }
}

/*
 * The long run: rounds, each followed by a probe; with settle_s > 0, a second probe once
 * the machine has done what the round left it (settle); one line each, then the verdicts.
 * The p99 target is judged on the probe after settling when there is one: that is the
 * latency at the history the round built, while the first also holds the round's aftermath
 * (autovacuum of a million rows, the kernel's and the broker's writeback), which is the same
 * in the first round as in the tenth.
 */
static bool run_long(size_t from, int rounds, size_t round_n, size_t probe_n, long rate,
                     long settle_s)
{
    double first = 0, worst_p99 = 0, worst_after = 0, last = 0, worst_settle = 0;
    long worst_hwm = 0;
    bool ok = true;
    size_t seq = from;
    printf("long run: %d rounds of %zu commands, each followed by %zu commands at %ld/s%s; "
           "sizes are table+indexes in MiB\n",
           rounds, round_n, probe_n, rate,
           settle_s > 0 ? ", then as many again once the machine is quiet" : "");
    warm_single(total - 1);
    for (int r = 0; r < rounds && ok; r++) {
        double thr = run_round(seq, round_n, false);
        seq += round_n;
        double p50 = -1, p99 = -1, s50 = -1, s99 = -1, waited = 0;
        char label[32], csv[4096];
        snprintf(label, sizeof label, "probe %d", r + 1);
        probe_csv(csv, sizeof csv, r + 1, "");
        ok = thr > 0 && run_probe(seq, probe_n, rate, false, label, csv, &p50, &p99);
        seq += probe_n;
        if (ok && settle_s > 0) {
            waited = settle(settle_s);
            snprintf(label, sizeof label, "settled probe %d", r + 1);
            probe_csv(csv, sizeof csv, r + 1, "-settled");
            ok = run_probe(seq, probe_n, rate, false, label, csv, &s50, &s99);
            seq += probe_n;
        }
        long rss, hwm;
        char sizes[1024], settled[128] = "";
        processor_memory(&rss, &hwm);
        table_sizes(sizes, sizeof sizes);
        if (settle_s > 0)
            snprintf(settled, sizeof settled, "; settled in %.0f s, then p50 %.1f ms, p99 %.1f ms",
                     waited, s50, s99);
        printf("round %d (%zu commands in all): %.0f commands/s; probe at %ld/s p50 %.1f ms, "
               "p99 %.1f ms%s; VmRSS %.1f MiB, VmHWM %.1f MiB; %s\n",
               r + 1, (size_t)(r + 1) * round_n, thr, rate, p50, p99, settled,
               (double)rss / 1024, (double)hwm / 1024, sizes);
        fflush(stdout);
        if (r == 0)
            first = thr;
        last = thr;
        double judged = settle_s > 0 ? s99 : p99;
        worst_p99 = judged > worst_p99 ? judged : worst_p99;
        worst_after = p99 > worst_after ? p99 : worst_after;
        worst_settle = waited > worst_settle ? waited : worst_settle;
        worst_hwm = hwm > worst_hwm ? hwm : worst_hwm;
    }
    if (settle_s > 0)
        printf("long run: probes right after a round: worst p99 %.1f ms (reported, not judged); "
               "settling took at most %.0f s\n",
               worst_after, worst_settle);
    printf("long run: %s; last round %.0f commands/s = %.0f%% of the first's %.0f (target >= "
           "90%%: %s); worst probe p99 %.1f ms%s (target <= 10 ms: %s); VmHWM %.1f MiB (target "
           "<= 64 MiB: %s)\n",
           ok ? "complete" : "INCOMPLETE", last, first > 0 ? 100 * last / first : 0, first,
           first > 0 && last >= 0.9 * first ? "met" : "NOT met", worst_p99,
           settle_s > 0 ? " after settling" : "", worst_p99 <= 10 ? "met" : "NOT met",
           (double)worst_hwm / 1024, worst_hwm > 0 && worst_hwm <= 65536 ? "met" : "NOT met");
    return ok;
}

int main(int argc, char **argv)
{
    long commands = argc > 1 ? atol(argv[1]) : 100000;
    long rate = argc > 2 ? atol(argv[2]) : 1000;
    long seconds = argc > 3 ? atol(argv[3]) : 20;
    nskus = argc > 4 ? atoi(argv[4]) : 1000;
    const char *mix_name = env_or("BENCH_MIX", "simple");
    int rounds = atoi(env_or("BENCH_MILLIONS", "0"));
    long round_n = atol(env_or("BENCH_ROUND", "1000000"));
    long probe_s = atol(env_or("BENCH_PROBE_S", "5"));
    long settle_s = atol(env_or("BENCH_SETTLE_S", "120"));
    if (strcmp(mix_name, "simple") != 0 && strcmp(mix_name, "realistic") != 0)
        die("BENCH_MIX", "simple or realistic");
    realistic = strcmp(mix_name, "realistic") == 0;
    if (rounds < 0 || round_n <= nskus || probe_s <= 0 || settle_s < 0)
        die("usage", "BENCH_MILLIONS >= 0, BENCH_ROUND > SKUS, BENCH_PROBE_S > 0, "
                     "BENCH_SETTLE_S >= 0");
    kafka_servers = getenv("KAFKA_BOOTSTRAP_SERVERS");
    prefix = env_or("TOPIC_PREFIX", "allocation");
    processor_pid = (pid_t)atol(env_or("BENCH_PROCESSOR_PID", "0"));
    group_id = env_or("KAFKA_GROUP_ID", "allocation-processor");
    if (!kafka_servers || !*kafka_servers)
        die("environment", "KAFKA_BOOTSTRAP_SERVERS must be set");
    if ((commands <= 0 && atoi(env_or("BENCH_MILLIONS", "0")) <= 0) || rate <= 0 || seconds <= 0 || nskus <= 0 || nskus > 100000)
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
    size_t probe_n = (size_t)(rate * probe_s);
    if (rounds > 0) /* the long run instead: rounds of commands, each with its probe */
        lat_to = setup + (size_t)rounds * ((size_t)round_n + (settle_s > 0 ? 2 : 1) * probe_n);
    total = lat_to + 1; /* and one more: the latency producer's warm-up */
    expect = calloc(total, 1);
    allow = calloc(total, 1);
    sent_us = calloc(total, sizeof *sent_us);
    seen_us = calloc(total, sizeof *seen_us);
    relayed_us = calloc(total, sizeof *relayed_us);
    struct timespec real_ts;
    clock_gettime(CLOCK_REALTIME, &real_ts);
    realtime_minus_monotonic_us =
        (long long)real_ts.tv_sec * 1000000 + real_ts.tv_nsec / 1000 - ap_test_now_us();
    change_count = calloc((size_t)nskus, sizeof *change_count);
    if (!expect || !allow || !sent_us || !seen_us || !relayed_us || !change_count)
        die("memory", "out of memory");
    if (realistic)
        model_setup();

    /* Parameters and the machine. */
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    char model[256] = "?", line[512];
    FILE *cpuinfo = fopen("/proc/cpuinfo", "r");
    while (cpuinfo && fgets(line, sizeof line, cpuinfo))
        if (sscanf(line, "model name : %255[^\n]", model) == 1)
            break;
    if (cpuinfo)
        fclose(cpuinfo);
    printf("bench_e2e: run %s, topics %s.*, mix %s (%s) over %d skus; ", tag, prefix, mix_name,
           realistic ? "Zipf skus; 78% new Allocate, 5% repeated, 15% ChangeBatchQuantity "
                       "that may deallocate, 2% rejected; out of stock happens"
                     : "uniform skus; 2% ChangeBatchQuantity raising, the rest new Allocate",
           nskus);
    if (rounds > 0)
        printf("long run: %d rounds of %ld commands, each then %ld s at %ld/s%s",
               rounds, round_n, probe_s, rate,
               settle_s > 0 ? ", and again once the machine is quiet" : "");
    else
        printf("%ld commands, then %ld commands/s for %ld s", commands, rate, seconds);
    printf("; JSON commands, Avro events\n");
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
        make_create(&c, 2 + 2 * (size_t)s, sku, ref,
                    realistic ? REALISTIC_SHIPMENT_QTY : SHIPMENT_QTY, "2030-01-01");
        send_cmd(bulk, &c, 2 + 2 * (size_t)s);
    }
    if (!wait_events(1, setup, false, bulk))
        die("setup", "events missing");
    double setup_s = (double)(last_seen(1, setup) - sent_us[1]) / 1e6;
    printf("setup: %zu CreateBatch in %.2f s = %.0f commands/s\n", setup - 1, setup_s,
           (double)(setup - 1) / setup_s);

    bool complete;
    if (rounds > 0) {
        complete = run_long(mix_from, rounds, (size_t)round_n, probe_n, rate, settle_s);
    } else {
        /* 1. Throughput ------------------------------------------------------------------- */
        double thr = run_round(mix_from, (size_t)commands, true);
        complete = thr > 0;
        /* 2. Latency at a fixed rate ------------------------------------------------------ */
        if (complete) {
            double p50, p99;
            warm_single(lat_to);
            complete = run_probe(lat_from, latency_n, rate, true, "latency",
                                 getenv("BENCH_LATENCY_CSV"), &p50, &p99);
            if ((double)rate > 0.7 * thr)
                printf("latency: NOTE the offered %ld/s is %.0f%% of the %.0f commands/s "
                       "measured above: near or past saturation, so these numbers mostly "
                       "measure a queue\n",
                       rate, 100.0 * (double)rate / thr, thr);
        }
    }

    /* Anything else the processor said about our commands. */
    printf("events of this run by topic:");
    for (int t = 0; t < NTOPICS; t++)
        printf(" %s %lu", topic_suffix[t] + 1, atomic_load(&per_topic[t]));
    printf("; unexpected %lu, re-deliveries %lu, commands not delivered %lu\n",
           atomic_load(&unexpected), atomic_load(&duplicates), atomic_load(&failed));
    if (realistic)
        printf("further events (after a command's first): %lu read, the model expected %lu "
               "Deallocated, %lu Allocated, %lu OutOfStock\n",
               atomic_load(&further), expected_further[T_DEALLOCATED],
               expected_further[T_ALLOCATED], expected_further[T_OUT_OF_STOCK]);

    atomic_store(&reader_stop, true);
    pthread_join(reader, NULL);
    ap_producer_poll(bulk, 100);
    ap_producer_free(bulk);
    ap_producer_free(single);
    if (db)
        PQfinish(db);
    free(expect);
    free(allow);
    free(sent_us);
    free(seen_us);
    free(relayed_us);
    free(change_count);
    bool ok = complete && !atomic_load(&unexpected) && !atomic_load(&failed);
    return ok ? 0 : 1;
}
