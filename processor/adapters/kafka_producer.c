/*
 * kafka_producer.c - librdkafka behind kafka_producer.h: an idempotent producer whose
 * delivery reports come back through one callback with each record's own opaque.
 *
 * Delivery is retried by librdkafka without a deadline (message.timeout.ms=0); idempotence
 * keeps the order of a partition's records across those retries, which is what the outbox's
 * per-sku ordering rests on. It is not the relay: what to send and what to do with a failed
 * report is decided by its owner. Everything librdkafka says goes through ap_log, once.
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/kafka_internal.h"
#include "ap/denial.h"
#include "ap/log.h"
#include "ap/kafka_producer.h"

struct ap_producer {
    rd_kafka_t *rk;
    ap_producer_delivery_fn on_delivery;
    void *ctx;
    int pending;      /* sent and not reported yet; touched only on the owner's thread */
    bool fatal;       /* a fatal error was logged */
    bool unreachable; /* all brokers down, and no acknowledgement or answer since */
    int64_t last_probe_ms; /* when a broker was last asked, while unreachable */
    bool linger_set;  /* the configuration chose a linger: flushes honour it */
};

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    ap_producer_t *self = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char text[512];
        rd_kafka_fatal_error(rk, text, sizeof text);
        if (!self->fatal)
            AP_ERROR("kafka", "producer fatal error: %s", text);
        self->fatal = true;
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        self->unreachable = true;
    if (ap_kafka_denied(err, reason)) {
        self->unreachable = true;
        return;
    }
    /* Transport errors come and go while brokers restart; librdkafka retries them itself. */
    AP_WARN("kafka", "producer %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static ap_err_t map_delivery_error(rd_kafka_resp_err_t rerr)
{
    switch (rerr) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return AP_OK;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__FATAL:
        return AP_ERR_UNAVAILABLE;
    /* The record itself is unacceptable: sending it again cannot succeed. */
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
        return AP_ERR_REFUSED;
    default:
        return AP_ERR_IO;
    }
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    ap_producer_t *self = opaque;
    ap_err_t err = map_delivery_error(msg->err);
    /* From the broker, a size refusal is the topic's max.message.bytes (or the broker's),
     * which an operator can raise: not for good, unlike a record over our own limit, which
     * rd_kafka_producev refuses before it is queued. */
    if (msg->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
        msg->err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE)
        err = AP_ERR_TOO_LARGE;
    self->pending--;
    if (err == AP_OK)
        self->unreachable = false;
    self->on_delivery(self->ctx, msg->_private, err, err ? rd_kafka_err2str(msg->err) : NULL);
}

ap_err_t ap_producer_new(const ap_config_t *cfg, const char *client_id,
                         ap_producer_delivery_fn on_delivery, void *ctx, ap_producer_t **out)
{
    ap_producer_t *self = calloc(1, sizeof *self);
    const char *const defaults[] = {
        "client.id", client_id, "enable.idempotence", "true", "acks", "all",
        /* Where a Java producer would put the same key. */
        "partitioner", "murmur2_random", "linger.ms", "5",
        /* Never give up on a record: the row stays in the outbox until it is delivered, and
         * a timed-out record would be re-sent behind newer ones of its key. */
        "message.timeout.ms", "0", NULL};
    rd_kafka_conf_t *conf;

    if (!self)
        return AP_ERR_NOMEM;
    self->on_delivery = on_delivery;
    self->ctx = ctx;
    for (size_t i = 0; i < cfg->nkafka; i++) {
        if (strcmp(cfg->kafka[i].key, "linger.ms") == 0 ||
            strcmp(cfg->kafka[i].key, "queue.buffering.max.ms") == 0)
            self->linger_set = true;
    }
    if ((conf = ap_kafka_conf_new(cfg, defaults))) {
        rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
        self->rk = ap_kafka_new(RD_KAFKA_PRODUCER, conf, error_cb, self);
    }
    if (!self->rk) {
        free(self);
        return AP_ERR_CONFIG; /* logged */
    }
    *out = self;
    return AP_OK;
}

ap_err_t ap_producer_send(ap_producer_t *producer, const char *topic, const void *key,
                          size_t key_len, const void *value, size_t value_len,
                          const ap_header_t *headers, size_t nheaders, void *opaque)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(nheaders + 1);
    for (size_t i = 0; i < nheaders; i++)
        rd_kafka_header_add(hdrs, headers[i].name, (ssize_t)headers[i].name_len,
                            headers[i].value, headers[i].value ? (ssize_t)headers[i].value_len : 0);

    /* A NULL pointer is a null key or value; a non-NULL one of length 0 an empty one. */
    rd_kafka_resp_err_t rerr = rd_kafka_producev(
        producer->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key, key ? key_len : 0),
        RD_KAFKA_V_VALUE((void *)value, value ? value_len : 0), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (rerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
        producer->pending++;
        return AP_OK; /* hdrs belong to the record now */
    }
    rd_kafka_headers_destroy(hdrs);
    if (rerr == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return AP_ERR_UNAVAILABLE;
    AP_ERROR("kafka", "cannot produce to %s: %s", topic, rd_kafka_err2str(rerr));
    if (rerr == RD_KAFKA_RESP_ERR__FATAL)
        return AP_ERR_UNAVAILABLE;
    return map_delivery_error(rerr) == AP_ERR_REFUSED ? AP_ERR_REFUSED : AP_ERR_IO;
}

int ap_producer_poll(ap_producer_t *producer, int timeout_ms)
{
    return rd_kafka_poll(producer->rk, timeout_ms);
}

void ap_producer_flush(ap_producer_t *producer, int timeout_ms)
{
    /* rd_kafka_flush ignores linger.ms while it runs; a timeout only means "not yet". */
    if (producer->linger_set)
        (void)rd_kafka_poll(producer->rk, timeout_ms);
    else
        (void)rd_kafka_flush(producer->rk, timeout_ms);
}

void ap_producer_purge(ap_producer_t *producer, int timeout_ms)
{
    if (producer->pending == 0)
        return;
    rd_kafka_resp_err_t rerr =
        rd_kafka_purge(producer->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    if (rerr)
        AP_WARN("kafka", "producer purge: %s", rd_kafka_err2str(rerr));
    int64_t deadline = ap_kafka_now_ms() + timeout_ms;
    while (producer->pending > 0 && ap_kafka_now_ms() < deadline)
        rd_kafka_poll(producer->rk, 50);
    if (producer->pending > 0)
        AP_WARN("kafka", "producer purge: %d record(s) still unreported", producer->pending);
}

int ap_producer_pending(ap_producer_t *producer)
{
    return producer->pending;
}

bool ap_producer_fatal(ap_producer_t *producer)
{
    return producer->fatal || rd_kafka_fatal_error(producer->rk, NULL, 0) != 0;
}

bool ap_producer_reachable(ap_producer_t *producer)
{
    /* An acknowledgement clears the flag, but a producer with nothing to send gets none:
     * while unreachable, ask for the broker list (at most once a second, 500 ms at most),
     * and an answer settles it, as the consumer does. */
    if (producer->unreachable && ap_kafka_now_ms() - producer->last_probe_ms >= 1000) {
        const struct rd_kafka_metadata *metadata = NULL;
        producer->last_probe_ms = ap_kafka_now_ms();
        if (rd_kafka_metadata(producer->rk, 0, NULL, &metadata, 500) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            producer->unreachable = false;
            ap_denial_clear(AP_SERVICE_KAFKA);
        }
        if (metadata)
            rd_kafka_metadata_destroy(metadata);
    }
    return !producer->unreachable;
}

void ap_producer_free(ap_producer_t *producer)
{
    if (!producer)
        return;
    rd_kafka_destroy(producer->rk);
    free(producer);
}
