/*
 * test_relay.c - the outbox relay (entrypoints/relay.c with pg_outbox_reader.c and
 * kafka_producer.c) against a real PostgreSQL at $DATABASE_URL and a real Kafka at
 * $KAFKA_BOOTSTRAP_SERVERS: rows arrive once, byte-exact, with their headers and event-id, in
 * id order per key and on the partition a Java producer would pick; new rows are relayed
 * promptly (NOTIFY); one relay is active at a time and another takes over; a killed session
 * is replaced; a stop is bounded when Kafka is away.
 *
 * Missing or unreachable services are failures, not skips. The relay lock is per database
 * and every `allocation-processor run` on the test database competes for it, so the relays
 * here run on a scratch database of their own (created from DATABASE_URL, migrated with
 * ap_pg_migrate, dropped at the end). Every test writes to topics of its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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

#define PARTITIONS 3

static char scratch_name[128];
static char *scratch_conninfo; /* the relays' database */
static ap_config_t cfg;

/* ---------------------------------------------------------------- helpers */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/* A name no other test (or run) uses: "<what>-<pid>-<time>-<n>". */
static void uniq(char *buf, size_t size, const char *what)
{
    static unsigned counter;
    snprintf(buf, size, "%s-%ld-%ld-%u", what, (long)getpid(), (long)time(NULL), ++counter);
}

static PGconn *connect_to(const char *conninfo)
{
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", PQerrorMessage(conn));
        PQfinish(conn);
        fail_msg("cannot connect to PostgreSQL (DATABASE_URL): %s", why);
    }
    return conn;
}

static void exec_on(const char *conninfo, const char *sql)
{
    PGconn *conn = connect_to(conninfo);
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(conn));
    PQclear(res);
    PQfinish(conn);
}

static long long scalar(const char *sql, const char *param)
{
    PGconn *conn = connect_to(scratch_conninfo);
    const char *params[] = {param};
    PGresult *res = PQexecParams(conn, sql, param ? 1 : 0, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        fail_msg("%s: %s", sql, PQerrorMessage(conn));
    long long value = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(conn);
    return value;
}

static long long outbox_rows(const char *topic)
{
    return scalar("SELECT count(*) FROM outbox WHERE topic = $1", topic);
}

/* DATABASE_URL with dbname replaced, as a keyword=value string. Caller frees. */
static char *conninfo_with_dbname(const char *url, const char *dbname)
{
    char *why = NULL;
    char *out = ap_test_conninfo_with(url, "dbname", dbname, &why);
    if (!out)
        fail_msg("DATABASE_URL does not parse: %s", why ? why : "out of memory");
    return out;
}

/* ---------------------------------------------------------------- Kafka helpers */

static rd_kafka_t *kafka_client(rd_kafka_type_t type, const char *group)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    bool ok = rd_kafka_conf_set(conf, "bootstrap.servers", cfg.bootstrap_servers, errstr,
                                sizeof errstr) == RD_KAFKA_CONF_OK;
    if (ok && group)
        ok = rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr) ==
                 RD_KAFKA_CONF_OK &&
             rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr) ==
                 RD_KAFKA_CONF_OK;
    if (!ok)
        fail_msg("kafka config: %s", errstr);
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (!rk)
        fail_msg("kafka client: %s", errstr);
    return rk;
}

/* An admin request's answer, failing the test when there is none or it is an error. */
static rd_kafka_event_t *admin_answer(rd_kafka_queue_t *queue, const char *what,
                                      const char *topic)
{
    rd_kafka_event_t *event = rd_kafka_queue_poll(queue, 20000);
    if (!event)
        fail_msg("%s %s: no answer from Kafka at %s", what, topic, cfg.bootstrap_servers);
    if (rd_kafka_event_error(event))
        fail_msg("%s %s: %s", what, topic, rd_kafka_event_error_string(event));
    return event;
}

/* The topics the tests made, deleted by teardown: a long-lived local broker would collect
 * their partitions run after run. */
static char *made_topics[32];
static size_t nmade_topics;

/* Creates a topic; `max_message_bytes` > 0 sets the topic's max.message.bytes. */
static void create_topic_with(const char *topic, int max_message_bytes)
{
    char why[512];
    if (!ap_test_create_topic(cfg.bootstrap_servers, topic, PARTITIONS, max_message_bytes, why,
                              sizeof why))
        fail_msg("creating topic %s: %s", topic, why);
    assert_true(nmade_topics < sizeof made_topics / sizeof made_topics[0]);
    assert_non_null(made_topics[nmade_topics++] = strdup(topic));
}

static void create_topic(const char *topic)
{
    create_topic_with(topic, 0);
}

/* Sets one of a topic's configs (AlterConfigs: the others go back to the broker's defaults). */
static void set_topic_config(const char *topic, const char *name, const char *value)
{
    rd_kafka_t *rk = kafka_client(RD_KAFKA_PRODUCER, NULL);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
    rd_kafka_ConfigResource_t *config = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    assert_int_equal(rd_kafka_ConfigResource_set_config(config, name, value),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_AlterConfigs(rk, &config, 1, NULL, queue);
    rd_kafka_event_t *event = admin_answer(queue, "altering topic", topic);
    size_t n = 0;
    const rd_kafka_ConfigResource_t **results =
        rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(event), &n);
    assert_int_equal(n, 1);
    if (rd_kafka_ConfigResource_error(results[0]))
        fail_msg("altering topic %s: %s", topic, rd_kafka_ConfigResource_error_string(results[0]));
    rd_kafka_event_destroy(event);
    rd_kafka_ConfigResource_destroy(config);
    rd_kafka_queue_destroy(queue);
    rd_kafka_destroy(rk);
}

/* Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2). */
static uint32_t murmur2(const unsigned char *data, size_t length)
{
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28c ^ (uint32_t)length;
    size_t whole = length & ~(size_t)3;
    for (size_t i = 0; i < whole; i += 4) {
        uint32_t k = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8 |
                     (uint32_t)data[i + 2] << 16 | (uint32_t)data[i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (length % 4) {
    case 3:
        h ^= (uint32_t)data[whole + 2] << 16;
        /* fallthrough */
    case 2:
        h ^= (uint32_t)data[whole + 1] << 8;
        /* fallthrough */
    case 1:
        h ^= data[whole];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

/* The partition a Java producer's default partitioner gives a (non-null) key. */
static int32_t java_partition(const void *key, size_t len, int partitions)
{
    return (int32_t)((murmur2(key, len) & 0x7fffffff) % (uint32_t)partitions);
}

/* ---------------------------------------------------------------- rows */

typedef struct hdr {
    char name[16];
    bool null;
    unsigned char value[8];
    size_t len;
} hdr_t;

typedef struct row {
    int64_t id;
    char event_id[40];
    bool key_null;
    unsigned char key[16];
    size_t key_len;
    bool value_null;
    unsigned char value[300];
    size_t value_len;
    hdr_t hdrs[5];
    size_t nhdrs;
    /* what the consumer saw */
    int seen;
    int32_t partition;
    int64_t offset;
} row_t;

static void hex(char *out, const unsigned char *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++)
        sprintf(out + 2 * i, "%02x", bytes[i]);
    out[2 * len] = '\0';
}

/* A varied row: binary keys over `nkeys` keys with a NULL and an empty key now and then,
 * binary values of many lengths with NULL and empty ones, headers with binary, NULL, empty
 * and repeated entries, or none. */
static void make_row(row_t *row, int i, int nkeys)
{
    memset(row, 0, sizeof *row);
    if (i % 50 == 7) {
        row->key_null = true;
    } else if (i % 50 == 8) {
        row->key_len = 0;
    } else {
        int k = i % nkeys;
        row->key[0] = 0x00;
        row->key[1] = 0xfe;
        row->key_len = 2 + (size_t)snprintf((char *)row->key + 2, sizeof row->key - 2, "k%d", k);
    }
    if (i % 25 == 3) {
        row->value_null = true;
    } else if (i % 25 == 4) {
        row->value_len = 0;
    } else {
        row->value_len = (size_t)(i * 7 % 290) + 1;
        for (size_t j = 0; j < row->value_len; j++)
            row->value[j] = (unsigned char)(i * 31 + j * 17);
        row->value[0] = 0x00;
    }
    if (i % 5 == 0)
        return;
    hdr_t *h = row->hdrs;
    snprintf(h[0].name, sizeof h[0].name, "event-type");
    memcpy(h[0].value, "Thing", 5);
    h[0].len = 5;
    snprintf(h[1].name, sizeof h[1].name, "bin");
    h[1].value[0] = 0x00;
    h[1].value[1] = 0xff;
    h[1].value[2] = (unsigned char)i;
    h[1].value[3] = '\n';
    h[1].len = 4;
    snprintf(h[2].name, sizeof h[2].name, "nullh");
    h[2].null = true;
    snprintf(h[3].name, sizeof h[3].name, "dup");
    memcpy(h[3].value, "first", 5);
    h[3].len = 5;
    snprintf(h[4].name, sizeof h[4].name, "dup");
    h[4].len = 0; /* empty, not null */
    row->nhdrs = 5;
}

/* Inserts the rows in a transaction left open on the connection returned (commit_rows ends
 * it, with one NOTIFY) and reads back their ids and event ids. */
static PGconn *begin_rows(const char *topic, row_t *rows, size_t n)
{
    static const char sql[] =
        "INSERT INTO outbox (topic, key, value, header_names, header_values) "
        "VALUES ($1, $2, $3, $4::text[], "
        "ARRAY(SELECT decode(v, 'hex') FROM unnest($5::text[]) WITH ORDINALITY AS h(v, n) "
        "ORDER BY n)) RETURNING id, event_id::text";
    PGconn *conn = connect_to(scratch_conninfo);
    PGresult *res = PQexec(conn, "BEGIN");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    for (size_t i = 0; i < n; i++) {
        row_t *row = &rows[i];
        char names[256] = "{", values[256] = "{";
        for (size_t h = 0; h < row->nhdrs; h++) {
            char vhex[20];
            hex(vhex, row->hdrs[h].value, row->hdrs[h].len);
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s\"%s\"",
                     h ? "," : "", row->hdrs[h].name);
            snprintf(values + strlen(values), sizeof values - strlen(values), "%s%s%s%s",
                     h ? "," : "", row->hdrs[h].null ? "NULL" : "\"", row->hdrs[h].null ? "" : vhex,
                     row->hdrs[h].null ? "" : "\"");
        }
        strcat(names, "}");
        strcat(values, "}");
        const char *params[] = {topic, row->key_null ? NULL : (const char *)row->key,
                                row->value_null ? NULL : (const char *)row->value, names, values};
        int lengths[] = {0, (int)row->key_len, (int)row->value_len, 0, 0};
        int formats[] = {0, 1, 1, 0, 0};
        res = PQexecParams(conn, sql, 5, NULL, params, lengths, formats, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            fail_msg("insert: %s", PQerrorMessage(conn));
        row->id = atoll(PQgetvalue(res, 0, 0));
        snprintf(row->event_id, sizeof row->event_id, "%s", PQgetvalue(res, 0, 1));
        PQclear(res);
    }
    return conn;
}

static void commit_rows(PGconn *conn)
{
    PGresult *res = PQexec(conn, "COMMIT");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(conn);
}

/* The same in one go. */
static void insert_rows(const char *topic, row_t *rows, size_t n)
{
    commit_rows(begin_rows(topic, rows, n));
}

static void wait_outbox_empty(const char *topic, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    long long left;
    while ((left = outbox_rows(topic)) > 0) {
        if (now_ms() > deadline)
            fail_msg("%lld row(s) of %s still in the outbox after %d ms", left, topic,
                     timeout_ms);
        ap_test_pause_ms(10);
    }
}

static bool bytes_equal(const void *got, size_t got_len, bool want_null, const void *want,
                        size_t want_len)
{
    if (want_null)
        return got == NULL;
    return got != NULL && got_len == want_len && memcmp(got, want, want_len) == 0;
}

/* Checks one consumed message against the row of the same event-id; marks it seen. */
static void check_message(const rd_kafka_message_t *msg, row_t *rows, size_t n)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *val;
    size_t size;
    assert_int_equal(rd_kafka_message_headers(msg, &hdrs), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_header_get_last(hdrs, "event-id", &val, &size),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    char event_id[40] = "";
    assert_true(size < sizeof event_id);
    memcpy(event_id, val, size);
    row_t *row = NULL;
    for (size_t i = 0; i < n && !row; i++)
        if (strcmp(rows[i].event_id, event_id) == 0)
            row = &rows[i];
    if (!row)
        fail_msg("a message with an unknown event-id %s", event_id);
    if (row->seen++)
        fail_msg("row %lld (event-id %s) delivered twice", (long long)row->id, event_id);
    row->partition = msg->partition;
    row->offset = msg->offset;

    if (!bytes_equal(msg->key, msg->key_len, row->key_null, row->key, row->key_len))
        fail_msg("row %lld: key differs (got %zu bytes%s)", (long long)row->id, msg->key_len,
                 msg->key ? "" : ", null");
    if (!bytes_equal(msg->payload, msg->len, row->value_null, row->value, row->value_len))
        fail_msg("row %lld: value differs (got %zu bytes%s)", (long long)row->id, msg->len,
                 msg->payload ? "" : ", null");
    if (!row->key_null)
        assert_int_equal(msg->partition, java_partition(row->key, row->key_len, PARTITIONS));

    /* The row's headers in order, then event-id. */
    assert_int_equal(rd_kafka_header_cnt(hdrs), row->nhdrs + 1);
    for (size_t h = 0; h <= row->nhdrs; h++) {
        const char *name;
        assert_int_equal(rd_kafka_header_get_all(hdrs, h, &name, &val, &size),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
        if (h == row->nhdrs) {
            assert_string_equal(name, "event-id");
            assert_int_equal(size, strlen(row->event_id));
            assert_memory_equal(val, row->event_id, size);
            continue;
        }
        const hdr_t *want = &row->hdrs[h];
        assert_string_equal(name, want->name);
        if (!bytes_equal(val, size, want->null, want->value, want->len))
            fail_msg("row %lld: header %zu (%s) differs", (long long)row->id, h, name);
    }
}

/* Reads the topic from the beginning until every row was seen (or the deadline passes). */
static void consume_rows(const char *topic, row_t *rows, size_t n, int timeout_ms)
{
    char group[128];
    uniq(group, sizeof group, "relaytest-reader");
    rd_kafka_t *rk = kafka_client(RD_KAFKA_CONSUMER, group);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(PARTITIONS);
    for (int p = 0; p < PARTITIONS; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);

    size_t seen = 0;
    long long deadline = now_ms() + timeout_ms;
    while (seen < n && now_ms() < deadline) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 200);
        if (!msg)
            continue;
        if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            check_message(msg, rows, n);
            seen++;
        } else if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            fprintf(stderr, "consume: %s\n", rd_kafka_message_errstr(msg));
        }
        rd_kafka_message_destroy(msg);
    }
    /* A little longer, to catch duplicates arriving right behind. */
    long long extra = now_ms() + 500;
    while (seen == n && now_ms() < extra) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 100);
        if (msg && msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            check_message(msg, rows, n);
        if (msg)
            rd_kafka_message_destroy(msg);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    for (size_t i = 0; i < n; i++)
        if (rows[i].seen != 1)
            fail_msg("row %lld of %s arrived %d time(s)", (long long)rows[i].id, topic,
                     rows[i].seen);
}

/* For every key, ids in offset order: rows are sorted by id, so offsets must rise. */
static void check_key_order(const row_t *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (rows[i].key_null)
            continue;
        for (size_t j = i + 1; j < n; j++) {
            if (rows[j].key_null || rows[j].key_len != rows[i].key_len ||
                memcmp(rows[j].key, rows[i].key, rows[i].key_len) != 0)
                continue;
            assert_true(rows[j].id > rows[i].id);
            assert_int_equal(rows[j].partition, rows[i].partition);
            if (rows[j].offset <= rows[i].offset)
                fail_msg("rows %lld and %lld of one key arrived out of order",
                         (long long)rows[i].id, (long long)rows[j].id);
            break; /* the next one checks its own successor */
        }
    }
}

static row_t *make_rows(size_t n, int nkeys, int first)
{
    row_t *rows = calloc(n, sizeof *rows);
    assert_non_null(rows);
    for (size_t i = 0; i < n; i++)
        make_row(&rows[i], first + (int)i, nkeys);
    return rows;
}

static ap_relay_t *start_relay(const ap_config_t *config)
{
    ap_err_t err = AP_ERR_INTERNAL;
    ap_relay_t *relay = ap_relay_start(config, &err);
    assert_int_equal(err, AP_OK);
    assert_non_null(relay);
    return relay;
}

static bool is_leader(ap_relay_t *relay)
{
    ap_relay_stats_t stats;
    ap_relay_stats(relay, &stats);
    return stats.leader;
}

static void wait_leader(ap_relay_t *relay, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    while (!is_leader(relay)) {
        if (now_ms() > deadline)
            fail_msg("the relay did not take the relay lock within %d ms", timeout_ms);
        ap_test_pause_ms(10);
    }
}

/* The relay counts a batch right after deleting its rows: an empty outbox can be seen first. */
static void wait_delivered(ap_relay_t *relay, uint64_t at_least, int timeout_ms)
{
    ap_relay_stats_t stats;
    long long deadline = now_ms() + timeout_ms;
    for (ap_relay_stats(relay, &stats); stats.delivered < at_least; ap_relay_stats(relay, &stats)) {
        if (now_ms() > deadline)
            fail_msg("the relay counted %llu delivered within %d ms, expected %llu or more",
                     (unsigned long long)stats.delivered, timeout_ms,
                     (unsigned long long)at_least);
        ap_test_pause_ms(10);
    }
}

/* ---------------------------------------------------------------- tests */

/* A backlog written before the relay starts: all of it, once, byte-exact, in order per key. */
static void test_backlog_delivered_exactly(void **state)
{
    (void)state;
    char topic[128];
    const size_t n = 500;
    uniq(topic, sizeof topic, "relaytest-backlog");
    create_topic(topic);
    row_t *rows = make_rows(n, 10, 0);
    insert_rows(topic, rows, n);

    ap_relay_t *relay = start_relay(&cfg);
    wait_outbox_empty(topic, 60000);
    wait_delivered(relay, n, 5000);
    ap_relay_stats_t stats;
    ap_relay_stats(relay, &stats);
    assert_true(stats.leader);
    assert_true(stats.connected);
    assert_int_equal(stats.failed, 0);
    ap_relay_stop(relay);

    consume_rows(topic, rows, n, 30000);
    check_key_order(rows, n);
    free(rows);
}

static long long outbox_vacuums(void)
{
    return scalar("SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'outbox'::regclass",
                  NULL);
}

/* Once it has deleted enough rows, the relay vacuums the outbox itself (autovacuum counts
 * apart, in autovacuum_count): the deleted rows' index entries would otherwise slow every
 * fetch until autovacuum came by. */
static void test_relay_vacuums_the_outbox(void **state)
{
    (void)state;
    char topic[128];
    const size_t n = 2500; /* more than the relay deletes before it vacuums */
    uniq(topic, sizeof topic, "relaytest-vacuum");
    create_topic(topic);
    row_t *rows = make_rows(n, 10, 0);
    insert_rows(topic, rows, n);
    long long before = outbox_vacuums();

    ap_relay_t *relay = start_relay(&cfg);
    wait_outbox_empty(topic, 60000);
    wait_delivered(relay, n, 5000);
    long long deadline = now_ms() + 10000;
    bool vacuumed;
    while (!(vacuumed = outbox_vacuums() > before) && now_ms() < deadline)
        ap_test_pause_ms(50);
    ap_relay_stop(relay); /* first: a relay left running would hold the lock the next test needs */
    if (!vacuumed)
        fail_msg("the relay delivered %zu rows but did not vacuum the outbox", n);

    consume_rows(topic, rows, n, 30000);
    check_key_order(rows, n);
    free(rows);
}

static int compare_ms(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* Prints the `n` times (ms) of `what` and returns their median. */
static long long median_ms(const char *what, const long long *took, int n)
{
    long long sorted[16];
    assert_true(n > 0 && n <= (int)(sizeof sorted / sizeof sorted[0]));
    memcpy(sorted, took, (size_t)n * sizeof *took);
    qsort(sorted, (size_t)n, sizeof *sorted, compare_ms);
    fprintf(stderr, "%s (ms):", what);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %lld", took[i]);
    fprintf(stderr, "; median %lld\n", sorted[n / 2]);
    return sorted[n / 2];
}

/* Rows committed while the relay idles arrive well inside its polling interval. */
static void test_new_rows_relayed_promptly(void **state)
{
    (void)state;
    char topic[128];
    enum { N = 10 };
    long long took[N];
    uniq(topic, sizeof topic, "relaytest-notify");
    create_topic(topic);
    row_t *rows = make_rows(N, 3, 1);

    ap_relay_t *relay = start_relay(&cfg);
    wait_leader(relay, 10000);
    for (int i = 0; i < N; i++) {
        /* Commit at varied points of the relay's idle wait. */
        ap_test_pause_ms(37 * i % 300 + 20);
        long long t0 = now_ms();
        insert_rows(topic, &rows[i], 1);
        wait_outbox_empty(topic, 10000);
        took[i] = now_ms() - t0;
    }
    ap_relay_stop(relay);

    /* Polling alone (every 500 ms) would give a median near 250 ms. */
    assert_true(median_ms("commit to deletion", took, N) < 150);
    consume_rows(topic, rows, N, 30000);
    free(rows);
}

/*
 * Rows committed while the relay sends a batch read without them are relayed at once, not at
 * the next poll: the relay waits only when its last batch took every row there was, and their
 * notification, queued on its session meanwhile, ends that wait at once.
 */
static void test_rows_committed_during_a_batch_relayed_promptly(void **state)
{
    (void)state;
    char topic[128];
    enum { N = 10, BULK = 100 };
    long long took[N];
    uniq(topic, sizeof topic, "relaytest-during");
    create_topic(topic);
    row_t *rows = make_rows(N * (BULK + 1), 3, 1);

    ap_relay_t *relay = start_relay(&cfg);
    wait_leader(relay, 10000);
    for (int i = 0; i < N; i++) {
        row_t *bulk = &rows[i * (BULK + 1)], *late = bulk + BULK;
        ap_test_pause_ms(37 * i % 300 + 20);
        PGconn *conn = begin_rows(topic, late, 1); /* its id is lower, its commit later */
        insert_rows(topic, bulk, BULK);            /* wakes the relay, which reads these ... */
        ap_test_pause_ms(1 + i % 4);
        long long t0 = now_ms();
        commit_rows(conn); /* ... while this one commits */
        wait_outbox_empty(topic, 10000);
        took[i] = now_ms() - t0;
    }
    ap_relay_stop(relay);

    /* A lost notification leaves the row to the poll, 500 ms after the relay went idle. */
    assert_true(median_ms("late commit to deletion", took, N) < 150);
    consume_rows(topic, rows, N * (BULK + 1), 30000);
    free(rows);
}

/* Two relays: one active, the other standing by; stopping the active one hands over. */
static void test_one_leader_and_failover(void **state)
{
    (void)state;
    char topic[128];
    const size_t n = 100;
    uniq(topic, sizeof topic, "relaytest-failover");
    create_topic(topic);
    row_t *rows = make_rows(n, 10, 2);

    ap_relay_t *relays[2] = {start_relay(&cfg), start_relay(&cfg)};
    long long deadline = now_ms() + 10000;
    while (!is_leader(relays[0]) && !is_leader(relays[1])) {
        if (now_ms() > deadline)
            fail_msg("neither relay took the relay lock");
        ap_test_pause_ms(10);
    }
    /* Through a few of the standby's retries, never two leaders. */
    long long until = now_ms() + 3500;
    while (now_ms() < until) {
        bool a = is_leader(relays[0]), b = is_leader(relays[1]);
        assert_true(a != b);
        ap_test_pause_ms(20);
    }
    int active = is_leader(relays[0]) ? 0 : 1, standby = 1 - active;

    insert_rows(topic, rows, n / 2);
    wait_outbox_empty(topic, 30000);
    ap_relay_stats_t stats;
    ap_relay_stats(relays[standby], &stats);
    assert_false(stats.leader);
    assert_int_equal(stats.delivered, 0);
    wait_delivered(relays[active], n / 2, 5000);

    ap_relay_stop(relays[active]);
    wait_leader(relays[standby], 10000);
    insert_rows(topic, rows + n / 2, n - n / 2);
    wait_outbox_empty(topic, 30000);
    wait_delivered(relays[standby], n - n / 2, 5000);
    ap_relay_stop(relays[standby]);

    consume_rows(topic, rows, n, 30000);
    check_key_order(rows, n);
    free(rows);
}

/* The relay's session killed by the server: it reconnects, takes the lock again, relays. */
static void test_reconnects_after_session_loss(void **state)
{
    (void)state;
    char topic[128];
    const size_t n = 20;
    uniq(topic, sizeof topic, "relaytest-reconnect");
    create_topic(topic);
    row_t *rows = make_rows(n, 4, 3);

    ap_relay_t *relay = start_relay(&cfg);
    wait_leader(relay, 10000);
    insert_rows(topic, rows, n / 2);
    wait_outbox_empty(topic, 30000);

    /* Only the relay uses the scratch database. */
    exec_on(scratch_conninfo, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()");
    insert_rows(topic, rows + n / 2, n - n / 2);
    wait_outbox_empty(topic, 30000);
    assert_true(is_leader(relay));
    ap_relay_stop(relay);

    consume_rows(topic, rows, n, 30000);
    check_key_order(rows, n);
    free(rows);
}

static void delete_topic_rows(const char *topic)
{
    PGconn *conn = connect_to(scratch_conninfo);
    const char *params[] = {topic};
    PGresult *res =
        PQexecParams(conn, "DELETE FROM outbox WHERE topic = $1", 1, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(conn);
}

/*
 * A row Kafka refuses for good (larger than the relay's own producer takes: its
 * message.max.bytes) is moved to outbox_parked with Kafka's reason, so it neither blocks nor
 * slows the rows behind it: they are delivered, in order, and the relay never backs off for
 * it.
 */
static void test_refused_row_is_parked(void **state)
{
    (void)state;
    char small[128], fine[128];
    uniq(small, sizeof small, "relaytest-small");
    uniq(fine, sizeof fine, "relaytest-fine");
    create_topic(small);
    create_topic(fine);
    row_t *rows = make_rows(40, 5, 6);
    ap_config_t limited = cfg;
    ap_kv_t limit[] = {{"message.max.bytes", "3000"}};
    limited.kafka = limit;
    limited.nkafka = 1;

    ap_relay_t *relay = start_relay(&limited);
    wait_leader(relay, 10000);
    /* The refused row first, so it heads every batch that follows. */
    PGconn *conn = connect_to(scratch_conninfo);
    const char *params[] = {small};
    PGresult *res = PQexecParams(conn,
                                 "INSERT INTO outbox (topic, key, value) "
                                 "VALUES ($1, 'big', decode(repeat('ab', 5000), 'hex'))",
                                 1, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(conn);
    insert_rows(fine, rows, 20);
    wait_outbox_empty(fine, 30000);
    insert_rows(fine, rows + 20, 20);
    wait_outbox_empty(fine, 30000);

    ap_relay_stats_t stats;
    ap_relay_stats(relay, &stats);
    assert_int_equal(stats.parked, 1);
    assert_int_equal(stats.failed, 0); /* no retry, so no backoff */
    assert_true(stats.leader);
    assert_int_equal(outbox_rows(small), 0);
    assert_int_equal(scalar("SELECT count(*) FROM outbox_parked WHERE topic = $1 AND key = 'big'"
                            "   AND length(value) = 5000 AND reason <> ''",
                            small),
                     1);
    ap_relay_stop(relay);
    consume_rows(fine, rows, 40, 30000);
    check_key_order(rows, 40);
    delete_topic_rows(small);
    free(rows);
}

/* Waits until the relay reports rows held up by too-large refusals (`some`), or none. */
static void wait_refused(ap_relay_t *relay, bool some, int timeout_ms)
{
    ap_relay_stats_t stats;
    long long deadline = now_ms() + timeout_ms;
    for (ap_relay_stats(relay, &stats); (stats.refused_rows > 0) != some;
         ap_relay_stats(relay, &stats)) {
        if (now_ms() >= deadline)
            fail_msg("the relay reported %zu refused rows after %d ms", stats.refused_rows,
                     timeout_ms);
        ap_test_pause_ms(50);
    }
}

/*
 * Rows their topic refuses as too large (its max.message.bytes lowered below them) are
 * neither dropped nor parked: they stay, with the later rows of their keys, while another
 * topic's rows flow, and the relay's stats say so. Once the topic takes them they are all
 * delivered, each once and in key order, without a restart.
 */
static void test_too_large_rows_wait_for_their_topic(void **state)
{
    (void)state;
    char small[128], fine[128];
    uniq(small, sizeof small, "relaytest-limited");
    uniq(fine, sizeof fine, "relaytest-flowing");
    create_topic_with(small, 200); /* below the larger rows make_row writes (~300 bytes) */
    create_topic(fine);
    row_t *rows = make_rows(40, 5, 6);
    row_t *others = make_rows(20, 5, 60);

    ap_relay_t *relay = start_relay(&cfg);
    wait_leader(relay, 10000);
    insert_rows(small, rows, 40);
    insert_rows(fine, others, 20);
    wait_outbox_empty(fine, 30000);
    wait_refused(relay, true, 30000);

    ap_relay_stats_t stats;
    ap_relay_stats(relay, &stats);
    assert_true(stats.refused > 0);
    assert_int_equal(stats.parked, 0);
    assert_non_null(strstr(stats.refused_reason, small));
    assert_true(outbox_rows(small) > 0);

    set_topic_config(small, "max.message.bytes", "1048588");
    wait_outbox_empty(small, 60000);
    wait_refused(relay, false, 5000);
    ap_relay_stats(relay, &stats);
    assert_int_equal(stats.parked, 0);
    ap_relay_stop(relay);
    consume_rows(small, rows, 40, 30000);
    check_key_order(rows, 40);
    consume_rows(fine, others, 20, 30000);
    free(rows);
    free(others);
}

/* With Kafka unreachable, rows stay and a stop still returns within its bound. */
static void test_stop_is_bounded_without_kafka(void **state)
{
    (void)state;
    char topic[128];
    const size_t n = 5;
    uniq(topic, sizeof topic, "relaytest-nokafka");
    row_t *rows = make_rows(n, 2, 4);
    ap_config_t away = cfg;
    away.bootstrap_servers = "127.0.0.1:1";
    ap_kv_t quick[] = {{"reconnect.backoff.max.ms", "200"}};
    away.kafka = quick;
    away.nkafka = 1;

    insert_rows(topic, rows, n);
    ap_relay_t *relay = start_relay(&away);
    wait_leader(relay, 10000);
    ap_relay_stats_t stats;
    long long deadline = now_ms() + 20000;
    do {
        if (now_ms() > deadline)
            fail_msg("the relay never reported Kafka unreachable");
        ap_test_pause_ms(20);
        ap_relay_stats(relay, &stats);
    } while (stats.connected);

    long long t0 = now_ms();
    ap_relay_stop(relay);
    long long took = now_ms() - t0;
    fprintf(stderr, "stop with Kafka away took %lld ms\n", took);
    assert_true(took < 10000);
    assert_int_equal(outbox_rows(topic), (long long)n);
    free(rows);
    /* Leave nothing behind for the next relay to retry against a topic nobody made. */
    delete_topic_rows(topic);
}

/* A KAFKA_* property librdkafka does not know stops the relay at start. */
static void test_bad_kafka_property(void **state)
{
    (void)state;
    ap_config_t bad = cfg;
    ap_kv_t props[] = {{"no.such.property", "1"}};
    bad.kafka = props;
    bad.nkafka = 1;
    ap_err_t err = AP_OK;
    assert_null(ap_relay_start(&bad, &err));
    assert_int_equal(err, AP_ERR_CONFIG);
    ap_relay_stop(NULL);
}

/* ---------------------------------------------------------------- setup */

static int setup(void **state)
{
    (void)state;
    const char *url = getenv("DATABASE_URL");
    char sql[256];

    /* Kafka must answer: a missing broker is a failure, not a skip. Checked first, so a
     * failure leaves no scratch database behind. */
    rd_kafka_t *rk = kafka_client(RD_KAFKA_PRODUCER, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t rerr = rd_kafka_metadata(rk, 0, NULL, &md, 10000);
    if (rerr)
        fail_msg("Kafka not reachable at KAFKA_BOOTSTRAP_SERVERS=%s: %s", cfg.bootstrap_servers,
                 rd_kafka_err2str(rerr));
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);

    uniq(scratch_name, sizeof scratch_name, "ap_relaytest");
    for (char *p = scratch_name; *p; p++)
        if (*p == '-')
            *p = '_';
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", scratch_name);
    exec_on(url, sql);
    scratch_conninfo = conninfo_with_dbname(url, scratch_name);
    int applied = 0;
    if (ap_pg_migrate(scratch_conninfo, &applied) != AP_OK)
        fail_msg("migrations failed on the scratch database");
    cfg.database_url = scratch_conninfo;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char sql[256];
    if (scratch_conninfo) {
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", scratch_name);
        exec_on(getenv("DATABASE_URL"), sql);
        free(scratch_conninfo);
    }
    char why[512];
    if (nmade_topics &&
        !ap_test_delete_topics(cfg.bootstrap_servers, made_topics, nmade_topics, why, sizeof why))
        fprintf(stderr, "test_relay: deleting the test topics: %s\n", why);
    for (size_t i = 0; i < nmade_topics; i++)
        free(made_topics[i]);
    return 0;
}

int main(void)
{
    const char *url = getenv("DATABASE_URL");
    const char *kafka = getenv("KAFKA_BOOTSTRAP_SERVERS");
    if (!url || !*url || !kafka || !*kafka) {
        fprintf(stderr, "test_relay: DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS must be set; "
                        "these tests need PostgreSQL and Kafka (eval \"$(deploy/local/services.sh "
                        "env)\" and use DATABASE_URL=$TEST_DATABASE_URL)\n");
        return 1;
    }
    const char *level = getenv("LOG_LEVEL");
    ap_log_setup(level && strcmp(level, "debug") == 0 ? AP_LOG_DEBUG : AP_LOG_WARN, false);
    cfg.bootstrap_servers = (char *)kafka;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_kafka_property),
        cmocka_unit_test(test_backlog_delivered_exactly),
        cmocka_unit_test(test_new_rows_relayed_promptly),
        cmocka_unit_test(test_rows_committed_during_a_batch_relayed_promptly),
        cmocka_unit_test(test_relay_vacuums_the_outbox),
        cmocka_unit_test(test_one_leader_and_failover),
        cmocka_unit_test(test_reconnects_after_session_loss),
        cmocka_unit_test(test_refused_row_is_parked),
        cmocka_unit_test(test_too_large_rows_wait_for_their_topic),
        cmocka_unit_test(test_stop_is_bounded_without_kafka),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
