/*
 * test_delete_topics.c - deletes every topic named PREFIX.<something>: `test-delete-topics
 * PREFIX`. The end-to-end tests and the benchmark each use a fresh topic prefix; deleting
 * their topics afterwards keeps a long-lived local broker from collecting thousands of
 * partitions, which slow it down for every later run. Uses KAFKA_BOOTSTRAP_SERVERS.
 * Exits 0 when nothing of PREFIX is left (or nothing was there), 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "test-delete-topics: %s: %s\n", what, why);
    return 1;
}

/* Deletes `names` and waits for the broker's answer; topics already gone are fine. */
static int delete_all(rd_kafka_t *rk, char **names, size_t n)
{
    char errstr[512];
    rd_kafka_DeleteTopic_t **del = calloc(n, sizeof *del);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ANY);
    int rc = 0;

    if (!del)
        return fail("deleting", "out of memory");
    for (size_t i = 0; i < n; i++)
        del[i] = rd_kafka_DeleteTopic_new(names[i]);
    rd_kafka_AdminOptions_set_operation_timeout(options, 10000, errstr, sizeof errstr);
    rd_kafka_DeleteTopics(rk, del, n, options, queue);
    rd_kafka_event_t *event = rd_kafka_queue_poll(queue, 20000);
    if (!event || rd_kafka_event_error(event)) {
        rc = fail("deleting", event ? rd_kafka_event_error_string(event) : "no answer");
    } else {
        size_t nresults = 0;
        const rd_kafka_topic_result_t **results = rd_kafka_DeleteTopics_result_topics(
            rd_kafka_event_DeleteTopics_result(event), &nresults);
        for (size_t i = 0; i < nresults; i++) {
            rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
            if (err && err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                rc = fail(rd_kafka_topic_result_name(results[i]),
                          rd_kafka_topic_result_error_string(results[i]));
        }
    }
    if (event)
        rd_kafka_event_destroy(event);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_DeleteTopic_destroy_array(del, n);
    free(del);
    rd_kafka_queue_destroy(queue);
    return rc;
}

int main(int argc, char **argv)
{
    char errstr[512];
    const char *servers = getenv("KAFKA_BOOTSTRAP_SERVERS");
    if (argc != 2 || !*argv[1]) {
        fprintf(stderr, "usage: test-delete-topics PREFIX\n");
        return 2;
    }
    if (!servers || !*servers)
        return fail("KAFKA_BOOTSTRAP_SERVERS", "not set");

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", servers, errstr, sizeof errstr)) {
        rd_kafka_conf_destroy(conf);
        return fail("bootstrap.servers", errstr);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk)
        return fail("client", errstr);

    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
    int rc = 0;
    if (err) {
        rc = fail("listing topics", rd_kafka_err2str(err));
    } else {
        size_t plen = strlen(argv[1]), n = 0;
        char **names = calloc((size_t)md->topic_cnt + 1, sizeof *names);
        for (int i = 0; names && i < md->topic_cnt; i++) {
            const char *name = md->topics[i].topic;
            if (strncmp(name, argv[1], plen) == 0 && name[plen] == '.')
                names[n++] = md->topics[i].topic;
        }
        if (!names)
            rc = fail("listing topics", "out of memory");
        else if (n > 0)
            rc = delete_all(rk, names, n);
        free(names);
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_destroy(rk);
    return rc;
}
