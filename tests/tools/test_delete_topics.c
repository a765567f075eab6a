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

#include "support.h"

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "test-delete-topics: %s: %s\n", what, why);
    return 1;
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
        else if (n > 0 && !ap_test_delete_topics(servers, names, n, errstr, sizeof errstr))
            rc = fail("deleting", errstr);
        free(names);
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_destroy(rk);
    return rc;
}
