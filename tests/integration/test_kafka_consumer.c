/*
 * test_kafka_consumer.c - the Kafka consumer adapter (adapters/kafka_consumer.c) against a real
 * Kafka at $KAFKA_BOOTSTRAP_SERVERS: a backlog larger than the consumer's queue limit arrives
 * whole, once and in order per partition, and the fetch wake-up (a seek of every assigned
 * partition when the queue drains after a backlog) is exercised on the way and loses nothing
 * and repeats nothing: for a partition quiet between wake-ups too, and for records produced
 * after them.
 *
 * A missing or unreachable broker is a failure, not a skip. The test writes to a topic of its
 * own (ap_test_create_topic) and deletes it at the end.
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

#include <librdkafka/rdkafka.h>

#include "support.h"
#include "ap/config.h"
#include "ap/kafka_consumer.h"
#include "ap/log.h"

#define PARTITIONS 2
#define QUEUE_LIMIT 1000                 /* queued.min.messages of the consumer under test */
#define BACKLOG (4 * QUEUE_LIMIT)        /* records per partition produced before it starts */
#define LATER 10                         /* records per partition produced after it drained */
#define DEADLINE_US (60 * 1000000LL)

static const char *bootstrap;
static char topic[128];
static int64_t created_ms; /* wall clock, before the first record was produced */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- Kafka helpers */

static rd_kafka_t *producer(void)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK)
        fail_msg("kafka config: %s", errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk)
        fail_msg("kafka producer: %s", errstr);
    return rk;
}

/* Produces records `from` .. `to`-1 to partitions `first` .. `last`, each valued
 * "<partition>:<seq>", and waits until all are acknowledged. */
static void produce_to(int32_t first, int32_t last, int from, int to)
{
    rd_kafka_t *rk = producer();
    for (int seq = from; seq < to; seq++) {
        for (int32_t part = first; part <= last; part++) {
            char value[32];
            int len = snprintf(value, sizeof value, "%d:%d", (int)part, seq);
            rd_kafka_resp_err_t err;
            while ((err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                            RD_KAFKA_V_PARTITION(part),
                                            RD_KAFKA_V_VALUE(value, (size_t)len),
                                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                            RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(rk, 10);
            if (err)
                fail_msg("produce: %s", rd_kafka_err2str(err));
        }
    }
    if (rd_kafka_flush(rk, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        fail_msg("producing to %s: not acknowledged within 30 s", topic);
    rd_kafka_destroy(rk);
}

static void produce(int from, int to)
{
    produce_to(0, PARTITIONS - 1, from, to);
}

/* ---------------------------------------------------------------- the consumer under test */

static ap_err_t from_beginning(void *ctx, const char *t, int32_t partition, int64_t *start)
{
    (void)ctx, (void)t, (void)partition;
    *start = -1;
    return AP_OK;
}

static void revoked(void *ctx, const char *t, int32_t partition)
{
    (void)ctx, (void)t, (void)partition;
}

/* Reads until every partition p has handed out records up to until[p] (exclusive), the way
 * the processor gathers a batch: a wait for the first record, then what is already there.
 * Each record must be the next of its partition: nothing skipped, nothing repeated. */
static void read_until_each(ap_kafka_consumer_t *consumer, int next[PARTITIONS],
                            const int until[PARTITIONS])
{
    long long deadline = ap_test_now_us() + DEADLINE_US;
    for (;;) {
        bool done = true;
        for (int p = 0; p < PARTITIONS; p++)
            done = done && next[p] == until[p];
        if (done)
            return;
        if (ap_test_now_us() > deadline)
            fail_msg("timed out: partitions at %d and %d of %d and %d", next[0], next[1],
                     until[0], until[1]);
        ap_record_t rec;
        for (int n = 0; ap_kafka_consumer_poll(consumer, n == 0 ? 100 : 0, &rec) == AP_OK; n++) {
            char want[32];
            assert_true(rec.partition >= 0 && rec.partition < PARTITIONS);
            snprintf(want, sizeof want, "%d:%d", (int)rec.partition, next[rec.partition]);
            if (rec.value_len != strlen(want) || memcmp(rec.value, want, rec.value_len) != 0)
                fail_msg("partition %d: expected %s, got %.*s", (int)rec.partition, want,
                         (int)rec.value_len, (const char *)rec.value);
            /* The producer's send time, on this host's clock: after the topic was made,
             * and not after it was read. */
            if (rec.timestamp_ms < created_ms || rec.timestamp_ms > wall_ms())
                fail_msg("partition %d: timestamp %lld outside [%lld, now]", (int)rec.partition,
                         (long long)rec.timestamp_ms, (long long)created_ms);
            next[rec.partition]++;
            ap_kafka_record_release(&rec);
        }
    }
}

static void read_until(ap_kafka_consumer_t *consumer, int next[PARTITIONS], int until)
{
    const int all[PARTITIONS] = {until, until};
    read_until_each(consumer, next, all);
}

static void test_backlog_beyond_the_queue_limit(void **state)
{
    (void)state;
    char group[160];
    snprintf(group, sizeof group, "%s-group", topic);
    char limit_text[16];
    snprintf(limit_text, sizeof limit_text, "%d", QUEUE_LIMIT);
    ap_kv_t limit = {"queued.min.messages", limit_text};
    ap_config_t cfg = {.bootstrap_servers = (char *)bootstrap, .group_id = group,
                       .kafka = &limit, .nkafka = 1};
    ap_kafka_rebalance_t rebalance = {.assigned = from_beginning, .revoked = revoked};
    ap_kafka_consumer_t *consumer = NULL;
    char *topics[] = {topic};

    produce(0, BACKLOG);
    assert_int_equal(ap_kafka_consumer_new(&cfg, &rebalance, &consumer), AP_OK);
    assert_int_equal(ap_kafka_consumer_subscribe(consumer, topics, 1), AP_OK);

    int next[PARTITIONS] = {0};
    read_until(consumer, next, BACKLOG);
    /* The backlog filled the queue to its limit: the fetcher stopped, and a drained queue
     * woke it. */
    uint64_t wakes = ap_kafka_consumer_fetch_wakes(consumer, NULL);
    assert_true(wakes >= 1);

    /* A backlog in partition 0 alone: partition 1 hands out nothing between the wake-ups,
     * and is sought again each time all the same (where the previous one left it). */
    produce_to(0, 0, BACKLOG, 2 * BACKLOG);
    const int only_first[PARTITIONS] = {2 * BACKLOG, BACKLOG};
    read_until_each(consumer, next, only_first);
    int partitions = 0;
    assert_true(ap_kafka_consumer_fetch_wakes(consumer, &partitions) > wakes);
    assert_int_equal(partitions, PARTITIONS);

    /* After the wake-ups, new records still come to both, once and in order. */
    produce_to(1, 1, BACKLOG, 2 * BACKLOG);
    produce(2 * BACKLOG, 2 * BACKLOG + LATER);
    read_until(consumer, next, 2 * BACKLOG + LATER);
    ap_record_t rec;
    assert_int_equal(ap_kafka_consumer_poll(consumer, 500, &rec), AP_ERR_NOT_FOUND);

    ap_kafka_consumer_close(consumer);
}

static int setup(void **state)
{
    (void)state;
    char why[512];
    snprintf(topic, sizeof topic, "test-kafka-consumer-%ld-%ld", (long)getpid(),
             (long)time(NULL));
    created_ms = wall_ms();
    if (!ap_test_create_topic(bootstrap, topic, PARTITIONS, 0, why, sizeof why)) {
        fprintf(stderr, "test_kafka_consumer: creating topic %s: %s\n", topic, why);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char why[512], *topics[] = {topic};
    if (!ap_test_delete_topics(bootstrap, topics, 1, why, sizeof why)) {
        fprintf(stderr, "test_kafka_consumer: deleting topic %s: %s\n", topic, why);
        return -1;
    }
    return 0;
}

int main(void)
{
    bootstrap = getenv("KAFKA_BOOTSTRAP_SERVERS");
    if (!bootstrap || !*bootstrap) {
        fprintf(stderr, "test_kafka_consumer: KAFKA_BOOTSTRAP_SERVERS must be set; this test "
                        "needs Kafka (eval \"$(deploy/local/services.sh env)\")\n");
        return 1;
    }
    const char *level = getenv("LOG_LEVEL");
    ap_log_setup(level && strcmp(level, "debug") == 0 ? AP_LOG_DEBUG : AP_LOG_WARN, false);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backlog_beyond_the_queue_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
