/*
 * support.c - helpers shared by the integration tests and benchmarks (see support.h).
 */
#include "support.h"

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ap/log.h"
#include "ap/pg.h"

long long ap_test_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void ap_test_pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

void ap_test_sleep_next(struct timespec *next, long long period_ns)
{
    next->tv_nsec += period_ns;
    while (next->tv_nsec >= 1000000000L) {
        next->tv_sec++;
        next->tv_nsec -= 1000000000L;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, next, NULL);
}

char *ap_test_conninfo_with(const char *conninfo, const char *key, const char *value,
                            char **why)
{
    PQconninfoOption *options = PQconninfoParse(conninfo, why);
    size_t cap = 1, len = 0;
    char *out = NULL;

    if (!options)
        return NULL;
    /* Room for every keyword and value, each value escaped at worst twice over. */
    for (PQconninfoOption *o = options; o->keyword; o++) {
        const char *val = strcmp(o->keyword, key) == 0 ? value : o->val;
        if (val)
            cap += strlen(o->keyword) + 2 * strlen(val) + 4;
    }
    if (!(out = malloc(cap)))
        goto out;
    for (PQconninfoOption *o = options; o->keyword; o++) {
        const char *val = strcmp(o->keyword, key) == 0 ? value : o->val;
        if (!val)
            continue;
        len += (size_t)snprintf(out + len, cap - len, "%s='", o->keyword);
        for (const char *p = val; *p; p++) {
            if (*p == '\'' || *p == '\\')
                out[len++] = '\\';
            out[len++] = *p;
        }
        out[len++] = '\'';
        out[len++] = ' ';
    }
    out[len] = '\0';
out:
    PQconninfoFree(options);
    return out;
}

const char *ap_test_migrated_db(const char *test)
{
    const char *url = getenv("DATABASE_URL");
    if (!url || !*url) {
        fprintf(stderr, "%s: DATABASE_URL is not set; these tests need PostgreSQL "
                        "(deploy/local/test sets it)\n", test);
        exit(1);
    }
    ap_log_setup(AP_LOG_WARN, false);
    int applied;
    if (ap_pg_migrate(url, &applied) != AP_OK) {
        fprintf(stderr, "%s: cannot migrate the database at DATABASE_URL\n", test);
        exit(1);
    }
    return url;
}

/* ---------------------------------------------------------------- topics */

#define ADMIN_WAIT_MS 20000

/* An admin client of `bootstrap` with a queue for its answers; false with the reason. */
static bool admin_client(const char *bootstrap, rd_kafka_t **rk, rd_kafka_queue_t **queue,
                         char *why, size_t whylen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, why, whylen) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return false;
    }
    if (!(*rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, whylen))) {
        rd_kafka_conf_destroy(conf);
        return false;
    }
    *queue = rd_kafka_queue_new(*rk);
    return true;
}

/* The answer to an admin request: its event, or NULL with the reason (none, or an error). */
static rd_kafka_event_t *admin_answer(rd_kafka_queue_t *queue, const char *bootstrap,
                                      char *why, size_t whylen)
{
    rd_kafka_event_t *event = rd_kafka_queue_poll(queue, ADMIN_WAIT_MS);
    if (!event) {
        snprintf(why, whylen, "no answer from Kafka at %s within %d s", bootstrap,
                 ADMIN_WAIT_MS / 1000);
    } else if (rd_kafka_event_error(event)) {
        snprintf(why, whylen, "%s", rd_kafka_event_error_string(event));
        rd_kafka_event_destroy(event);
        event = NULL;
    }
    return event;
}

bool ap_test_create_topic(const char *bootstrap, const char *topic, int partitions,
                          int max_message_bytes, char *why, size_t whylen)
{
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    if (!admin_client(bootstrap, &rk, &queue, why, whylen))
        return false;
    bool ok = false;
    rd_kafka_NewTopic_t *newt = rd_kafka_NewTopic_new(topic, partitions, -1, why, whylen);
    char value[32];
    snprintf(value, sizeof value, "%d", max_message_bytes);
    if (newt && (max_message_bytes <= 0 ||
                 rd_kafka_NewTopic_set_config(newt, "max.message.bytes", value) ==
                     RD_KAFKA_RESP_ERR_NO_ERROR)) {
        rd_kafka_CreateTopics(rk, &newt, 1, NULL, queue);
        rd_kafka_event_t *event = admin_answer(queue, bootstrap, why, whylen);
        if (event) {
            size_t n = 0;
            const rd_kafka_topic_result_t **results = rd_kafka_CreateTopics_result_topics(
                rd_kafka_event_CreateTopics_result(event), &n);
            ok = n == 1 && !rd_kafka_topic_result_error(results[0]);
            if (!ok)
                snprintf(why, whylen, "%s",
                         n == 1 ? rd_kafka_topic_result_error_string(results[0])
                                : "no result for the topic");
            rd_kafka_event_destroy(event);
        }
    }
    if (newt)
        rd_kafka_NewTopic_destroy(newt);
    rd_kafka_queue_destroy(queue);
    rd_kafka_destroy(rk);
    return ok;
}

bool ap_test_delete_topics(const char *bootstrap, char *const *topics, size_t n, char *why,
                           size_t whylen)
{
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    rd_kafka_DeleteTopic_t **del = calloc(n ? n : 1, sizeof *del);
    if (!del) {
        snprintf(why, whylen, "out of memory");
        return false;
    }
    if (!admin_client(bootstrap, &rk, &queue, why, whylen)) {
        free(del);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        del[i] = rd_kafka_DeleteTopic_new(topics[i]);
    /* Answered once the topics are gone, not only once the request is taken. */
    rd_kafka_AdminOptions_t *options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ANY);
    char errstr[256];
    rd_kafka_AdminOptions_set_operation_timeout(options, ADMIN_WAIT_MS / 2, errstr,
                                                sizeof errstr);
    rd_kafka_DeleteTopics(rk, del, n, options, queue);
    rd_kafka_event_t *event = admin_answer(queue, bootstrap, why, whylen);
    bool ok = event != NULL;
    if (event) {
        size_t nresults = 0;
        const rd_kafka_topic_result_t **results = rd_kafka_DeleteTopics_result_topics(
            rd_kafka_event_DeleteTopics_result(event), &nresults);
        for (size_t i = 0; i < nresults; i++) {
            rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
            if (err && err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
                snprintf(why, whylen, "%s: %s", rd_kafka_topic_result_name(results[i]),
                         rd_kafka_topic_result_error_string(results[i]));
                ok = false;
            }
        }
        rd_kafka_event_destroy(event);
    }
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_DeleteTopic_destroy_array(del, n);
    free(del);
    rd_kafka_queue_destroy(queue);
    rd_kafka_destroy(rk);
    return ok;
}
