/*
 * kafka_admin.c - creating the topics the processor reads and writes, with the configured
 * partitions and replication, through a short-lived client of its own.
 */
#include <librdkafka/rdkafka.h>
#include <stdlib.h>

#include "adapters/kafka_internal.h"
#include "ap/kafka_consumer.h"
#include "ap/denial.h"
#include "ap/log.h"

/* A refusal is said through ap/denial.h; other errors show in the request's own result. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (!ap_kafka_denied(err, reason))
        AP_DEBUG("kafka", "admin %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* A producer handle is the cheapest client that can send admin requests. */
static rd_kafka_t *admin_client(const ap_config_t *cfg)
{
    rd_kafka_conf_t *conf = ap_kafka_conf_new(cfg, NULL);
    return conf ? ap_kafka_new(RD_KAFKA_PRODUCER, conf, error_cb, NULL) : NULL;
}

ap_err_t ap_kafka_create_topics(const ap_config_t *cfg, char *const *topics, size_t ntopics,
                                int timeout_ms)
{
    char errstr[512];
    int partitions = cfg->topic_partitions, replication_factor = cfg->topic_replication_factor;
    rd_kafka_t *rk = admin_client(cfg);
    rd_kafka_NewTopic_t **newt = calloc(ntopics, sizeof *newt);
    rd_kafka_queue_t *queue = NULL;
    rd_kafka_AdminOptions_t *options = NULL;
    rd_kafka_event_t *event = NULL;
    ap_err_t err = AP_ERR_NOMEM;

    if (!rk) {
        err = AP_ERR_CONFIG;
        goto out;
    }
    queue = rd_kafka_queue_new(rk);
    options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    if (!newt)
        goto out;
    for (size_t i = 0; i < ntopics; i++) {
        newt[i] = rd_kafka_NewTopic_new(topics[i], partitions, replication_factor, errstr,
                                        sizeof errstr);
        if (!newt[i]) {
            AP_ERROR("kafka", "topic %s: %s", topics[i], errstr);
            err = AP_ERR_CONFIG;
            goto out;
        }
    }
    rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr, sizeof errstr);
    rd_kafka_CreateTopics(rk, newt, ntopics, options, queue);
    event = rd_kafka_queue_poll(queue, timeout_ms + 1000);
    if (!event || rd_kafka_event_error(event)) {
        /* A refusal was said once already (ap/denial.h): a timeout here only repeats it. */
        ap_log(ap_denial_get(AP_SERVICE_KAFKA, NULL, 0) ? AP_LOG_DEBUG : AP_LOG_ERROR, "kafka",
               "cannot create topics: %s",
               event ? rd_kafka_event_error_string(event) : "timed out");
        err = AP_ERR_UNAVAILABLE;
        goto out;
    }
    size_t n = 0;
    const rd_kafka_topic_result_t **results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &n);
    err = AP_OK;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t terr = rd_kafka_topic_result_error(results[i]);
        const char *name = rd_kafka_topic_result_name(results[i]);
        if (terr == RD_KAFKA_RESP_ERR_NO_ERROR) {
            AP_INFO("kafka", "created topic %s (%d partitions)", name, partitions);
        } else if (terr != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            AP_ERROR("kafka", "cannot create topic %s: %s", name,
                     rd_kafka_topic_result_error_string(results[i]));
            err = AP_ERR_UNAVAILABLE;
        }
    }
out:
    if (event)
        rd_kafka_event_destroy(event);
    for (size_t i = 0; newt && i < ntopics; i++) {
        if (newt[i])
            rd_kafka_NewTopic_destroy(newt[i]);
    }
    free(newt);
    if (options)
        rd_kafka_AdminOptions_destroy(options);
    if (queue)
        rd_kafka_queue_destroy(queue);
    if (rk)
        rd_kafka_destroy(rk);
    return err;
}
