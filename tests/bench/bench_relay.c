/*
 * bench_relay.c - how fast the outbox relay moves rows, against a real PostgreSQL
 * ($DATABASE_URL) and Kafka ($KAFKA_BOOTSTRAP_SERVERS). A program that prints numbers, not a
 * test: it asserts nothing about them.
 *
 *   bench_relay [ROWS [RATE [SECONDS]]]     defaults: 50000 rows, 200 rows/s, 10 s
 *
 * 1. Throughput: ROWS rows (~100-byte values, 1,000 keys, three headers) are inserted in one
 *    statement, then a relay starts; rows/s is ROWS over the time from ap_relay_start until
 *    the relay has deleted them all (start-up, lock and first metadata included).
 * 2. Latency at rest: one row per transaction at RATE rows/s for SECONDS; for each row, the
 *    time from its COMMIT returning to the benchmark until a consumer in the benchmark reads
 *    it from Kafka (so: NOTIFY, fetch, produce with linger.ms=5, acks=all, consumer fetch).
 *
 * Like test_relay, it runs on a scratch database created from DATABASE_URL and dropped at
 * the end, so no other relay holds the lock and no other rows are in the way.
 */
#include <pthread.h>
#include <stdatomic.h>
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
#include "ap/pg.h"
#include "ap/relay.h"

#define PARTITIONS 6
#define RELAY_BATCH 1000 /* BATCH_MAX in processor/entrypoints/relay.c */

static const char *kafka_servers;



static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_relay: %s: %s\n", what, why);
    exit(1);
}

static PGconn *connect_to(const char *conninfo)
{
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK)
        die("cannot connect to PostgreSQL", PQerrorMessage(conn));
    return conn;
}

static void exec_params(PGconn *conn, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        die(sql, PQerrorMessage(conn));
    PQclear(res);
}

/* DATABASE_URL with dbname replaced, as a keyword=value string. Caller frees. */
static char *conninfo_with_dbname(const char *url, const char *dbname)
{
    char *why = NULL;
    char *out = ap_test_conninfo_with(url, "dbname", dbname, &why);
    if (!out)
        die("DATABASE_URL does not parse", why ? why : "out of memory");
    return out;
}

static rd_kafka_t *kafka_client(rd_kafka_type_t type, const char *group)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", kafka_servers, errstr, sizeof errstr) ||
        (group && rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr)) ||
        (group && rd_kafka_conf_set(conf, "fetch.wait.max.ms", "50", errstr, sizeof errstr)))
        die("kafka config", errstr);
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (!rk)
        die("kafka client", errstr);
    return rk;
}

static void create_topic(const char *topic)
{
    char errstr[512];
    rd_kafka_t *rk = kafka_client(RD_KAFKA_PRODUCER, NULL);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
    rd_kafka_NewTopic_t *newt =
        rd_kafka_NewTopic_new(topic, PARTITIONS, -1, errstr, sizeof errstr);
    if (!newt)
        die("topic", errstr);
    rd_kafka_CreateTopics(rk, &newt, 1, NULL, queue);
    rd_kafka_event_t *event = rd_kafka_queue_poll(queue, 20000);
    if (!event || rd_kafka_event_error(event))
        die("cannot create topic", event ? rd_kafka_event_error_string(event) : "no answer");
    size_t n = 0;
    const rd_kafka_topic_result_t **results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &n);
    if (n != 1 || rd_kafka_topic_result_error(results[0]))
        die("cannot create topic", n ? rd_kafka_topic_result_error_string(results[0]) : "?");
    rd_kafka_event_destroy(event);
    rd_kafka_NewTopic_destroy(newt);
    rd_kafka_queue_destroy(queue);
    rd_kafka_destroy(rk);
}

static uint64_t delivered(ap_relay_t *relay)
{
    ap_relay_stats_t stats;
    ap_relay_stats(relay, &stats);
    return stats.delivered;
}

/* ---------------------------------------------------------------- latency consumer */

typedef struct reader {
    const char *topic;
    long long *seen_us; /* per sequence number, 0 until read */
    size_t n;
    atomic_size_t got;
    atomic_bool ready, stop;
} reader_t;

static void *reader_main(void *arg)
{
    reader_t *reader = arg;
    char group[160];
    snprintf(group, sizeof group, "%s-reader", reader->topic);
    rd_kafka_t *rk = kafka_client(RD_KAFKA_CONSUMER, group);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(PARTITIONS);
    for (int p = 0; p < PARTITIONS; p++)
        rd_kafka_topic_partition_list_add(parts, reader->topic, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(rk, parts))
        die("assign", "failed");
    rd_kafka_topic_partition_list_destroy(parts);
    /* Wait until fetching runs, so the first rows are not measured against start-up. */
    for (int i = 0; i < 20; i++) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 100);
        if (msg)
            rd_kafka_message_destroy(msg);
    }
    atomic_store(&reader->ready, true);
    while (!atomic_load(&reader->stop)) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 50);
        if (!msg)
            continue;
        long long t = ap_test_now_us();
        if (!msg->err && msg->key && msg->key_len < 32) {
            char key[32];
            memcpy(key, msg->key, msg->key_len);
            key[msg->key_len] = '\0';
            char *end;
            unsigned long seq = strtoul(key, &end, 10);
            if (end != key && !*end && seq < reader->n && reader->seen_us[seq] == 0) {
                reader->seen_us[seq] = t;
                atomic_fetch_add(&reader->got, 1);
            }
        }
        rd_kafka_message_destroy(msg);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return NULL;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    const char *url = getenv("DATABASE_URL");
    kafka_servers = getenv("KAFKA_BOOTSTRAP_SERVERS");
    long rows = argc > 1 ? atol(argv[1]) : 50000;
    long rate = argc > 2 ? atol(argv[2]) : 200;
    long seconds = argc > 3 ? atol(argv[3]) : 10;
    if (!url || !*url || !kafka_servers || !*kafka_servers)
        die("environment", "DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS must be set");
    if (rows <= 0 || rate <= 0 || seconds <= 0)
        die("usage", "bench_relay [ROWS [RATE [SECONDS]]]");
    ap_log_setup(AP_LOG_WARN, false);

    char dbname[96], topic[128], sql[256];
    snprintf(dbname, sizeof dbname, "ap_relaybench_%ld_%ld", (long)getpid(), (long)time(NULL));
    PGconn *admin = connect_to(url);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", dbname);
    exec_params(admin, sql, 0, NULL);
    char *conninfo = conninfo_with_dbname(url, dbname);
    if (ap_pg_migrate(conninfo, NULL) != AP_OK)
        die("migrations", "failed");
    PGconn *conn = connect_to(conninfo);
    ap_config_t cfg = {.database_url = conninfo, .bootstrap_servers = (char *)kafka_servers};

    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    printf("bench_relay: %ld CPU(s), relay batch %d rows, linger.ms 5, acks=all, idempotent, "
           "%d partitions%s\n",
           nproc, RELAY_BATCH, PARTITIONS,
#if defined(__SANITIZE_ADDRESS__)
           ", AddressSanitizer build (numbers are pessimistic)"
#else
           ""
#endif
    );

    /* 1. Throughput ------------------------------------------------------------------- */
    snprintf(topic, sizeof topic, "relaybench-bulk-%ld-%ld", (long)getpid(), (long)time(NULL));
    create_topic(topic);
    char nrows_text[32];
    snprintf(nrows_text, sizeof nrows_text, "%ld", rows);
    const char *bulk_params[] = {topic, nrows_text};
    long long t0 = ap_test_now_us();
    exec_params(conn,
                "INSERT INTO outbox (topic, key, value, header_names, header_values) "
                "SELECT $1, convert_to('sku-' || (i % 1000), 'UTF8'), "
                "       decode(repeat(md5(i::text), 6) || 'abcd', 'hex'), "
                "       '{event-type,correlation-id,causation-id}', "
                "       ARRAY[convert_to('Allocated', 'UTF8'), "
                "             convert_to(gen_random_uuid()::text, 'UTF8'), "
                "             convert_to('allocation.commands/0/' || i, 'UTF8')] "
                "FROM generate_series(1, $2::int) AS i",
                2, bulk_params);
    long long t1 = ap_test_now_us();
    printf("throughput: %ld rows (98-byte values, 1000 keys, 3 headers) inserted in %.2f s\n",
           rows, (double)(t1 - t0) / 1e6);

    ap_err_t err;
    long long started = ap_test_now_us();
    ap_relay_t *relay = ap_relay_start(&cfg, &err);
    if (!relay)
        die("relay", "cannot start");
    long long first = 0;
    while (delivered(relay) < (uint64_t)rows) {
        if (!first && delivered(relay) > 0)
            first = ap_test_now_us();
        if (ap_test_now_us() - started > 600LL * 1000000)
            die("throughput", "the relay did not finish within 10 minutes");
        ap_test_pause_ms(2);
    }
    long long done = ap_test_now_us();
    double total_s = (double)(done - started) / 1e6;
    printf("throughput: relayed %ld rows in %.2f s = %.0f rows/s (from ap_relay_start; "
           "%.0f rows/s from the first batch deleted)\n",
           rows, total_s, (double)rows / total_s,
           first && done > first && rows > RELAY_BATCH
               ? (double)(rows - RELAY_BATCH) / ((double)(done - first) / 1e6)
               : 0.0);

    /* 2. Latency at rest ------------------------------------------------------------- */
    size_t n = (size_t)(rate * seconds);
    long long *commit_us = calloc(n, sizeof *commit_us);
    reader_t reader = {.n = n, .seen_us = calloc(n, sizeof(long long))};
    if (!commit_us || !reader.seen_us)
        die("memory", "out of memory");
    snprintf(topic, sizeof topic, "relaybench-latency-%ld-%ld", (long)getpid(), (long)time(NULL));
    create_topic(topic);
    reader.topic = topic;
    atomic_init(&reader.got, 0);
    atomic_init(&reader.ready, false);
    atomic_init(&reader.stop, false);
    pthread_t reader_thread;
    pthread_create(&reader_thread, NULL, reader_main, &reader);
    while (!atomic_load(&reader.ready))
        ap_test_pause_ms(10);
    /* Warm the relay's producer for this topic (its metadata), outside the measurement. */
    const char *warm_params[] = {topic};
    exec_params(conn, "INSERT INTO outbox (topic, key, value) VALUES ($1, 'warm-up', 'x')", 1,
                warm_params);
    while (delivered(relay) < (uint64_t)rows + 1)
        ap_test_pause_ms(5);

    long long period_ns = 1000000000LL / rate;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (size_t i = 0; i < n; i++) {
        char seq[32], value[128];
        snprintf(seq, sizeof seq, "%zu", i);
        snprintf(value, sizeof value, "%-100zu", i);
        const char *params[] = {topic, seq, value};
        /* One statement in autocommit: its own transaction, committed when it returns. */
        exec_params(conn,
                    "INSERT INTO outbox (topic, key, value) "
                    "VALUES ($1, convert_to($2, 'UTF8'), convert_to($3, 'UTF8'))",
                    3, params);
        commit_us[i] = ap_test_now_us();
        ap_test_sleep_next(&next, period_ns);
    }
    long long tail = ap_test_now_us();
    while (atomic_load(&reader.got) < n && ap_test_now_us() - tail < 10LL * 1000000)
        ap_test_pause_ms(10);
    atomic_store(&reader.stop, true);
    pthread_join(reader_thread, NULL);

    long long *lat = calloc(n, sizeof *lat);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (reader.seen_us[i])
            lat[m++] = reader.seen_us[i] - commit_us[i];
    qsort(lat, m, sizeof *lat, cmp_ll);
    printf("latency: %zu rows at %ld rows/s for %ld s, one per transaction; COMMIT returned -> "
           "read by a consumer: ",
           n, rate, seconds);
    if (m)
        printf("p50 %.1f ms, p99 %.1f ms, max %.1f ms", (double)lat[m / 2] / 1000,
               (double)lat[(m * 99) / 100 < m ? (m * 99) / 100 : m - 1] / 1000,
               (double)lat[m - 1] / 1000);
    printf(" (%zu of %zu read)\n", m, n);

    ap_relay_stop(relay);
    PQfinish(conn);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
    exec_params(admin, sql, 0, NULL);
    PQfinish(admin);
    free(lat);
    free(commit_us);
    free(reader.seen_us);
    free(conninfo);
    return m == n ? 0 : 1;
}
