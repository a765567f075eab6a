/*
 * kafka_consumer.c - librdkafka behind the consumer port of kafka_consumer.h.
 *
 * Offsets are never committed automatically: the entrypoint stores them in Postgres with the
 * effects they cover and tells us where each assigned partition starts. Everything librdkafka
 * says goes through ap_log, once.
 *
 * The fetch wake-up. librdkafka 2.0.2 stops fetching while the consumer queue (every assigned
 * partition's fetch queue forwards to it) holds queued.min.messages records, and decides to
 * fetch again only when its broker thread next wakes: on a fetch response, an operation for
 * it, or after up to a second (its issue #2879; 2.3.0's fetch.queue.backoff.ms is the fix).
 * So a backlog drains, and then records wait out the rest of that second. This adapter sees
 * the same count the fetcher compares (rd_kafka_queue_length follows the forwarding): once it
 * has been at least half the limit, the fetcher may have stopped, and when a poll then finds
 * the queue empty, an asynchronous seek of each assigned partition to its position (the
 * record after the last one handed out) wakes the broker thread. The queue being empty, the
 * seek discards nothing and skips nothing. At worst the fetcher had not stopped and its fetch
 * in flight is dropped and asked again: one round trip, once per backlog. A seek clears
 * librdkafka's position until the partition hands out a record again, so the offsets sought
 * are kept until the next rebalance, seek or pause: a partition quiet since the last wake-up is
 * sought again too, and so is its broker's thread woken when the other brokers' partitions
 * filled the queue.
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/kafka_internal.h"
#include "ap/kafka_consumer.h"
#include "ap/denial.h"
#include "ap/log.h"

struct ap_kafka_consumer {
    rd_kafka_t *rk;
    ap_kafka_rebalance_t rebalance;
    bool paused;       /* backpressure: new partitions are paused too */
    bool suspect;      /* a connection failed: ask a broker before calling it reachable */
    bool unreachable;  /* no broker answered the last probe */
    int64_t last_probe; /* ms, monotonic */
    bool subscribed;
    bool assigned;      /* the group gave it an assignment (maybe empty) at least once */
    rd_kafka_queue_t *queue; /* the consumer queue, for its length */
    int queue_limit;         /* queued.min.messages */
    bool fetch_may_stop;     /* the queue reached half that limit since the last wake-up */
    uint64_t fetch_wakes;
    int fetch_wake_partitions; /* how many partitions the last wake-up sought */
    /* Where the last wake-up sought each partition to; NULL after a rebalance, a seek or a
     * pause. */
    rd_kafka_topic_partition_list_t *sought;
};

static void forget_sought(ap_kafka_consumer_t *self)
{
    if (self->sought)
        rd_kafka_topic_partition_list_destroy(self->sought);
    self->sought = NULL;
}

/* How long a close waits for the first assignment of a member still joining. */
#define FIRST_ASSIGNMENT_WAIT_MS 10000

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    ap_kafka_consumer_t *self = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT)
        self->suspect = true;
    if (ap_kafka_denied(err, reason)) {
        self->suspect = true;
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char text[512];
        rd_kafka_fatal_error(rk, text, sizeof text);
        AP_ERROR("kafka", "fatal: %s", text);
        return;
    }
    /* Transport errors come and go while brokers restart; librdkafka retries them itself. */
    AP_WARN("kafka", "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    ap_kafka_consumer_t *self = opaque;
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR_NO_ERROR;

    forget_sought(self); /* a partition may come back elsewhere in its log */
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        self->assigned = true;
        rd_kafka_topic_partition_list_t *accepted = rd_kafka_topic_partition_list_new(parts->cnt);
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *p = &parts->elems[i];
            int64_t start = -1;
            if (self->rebalance.assigned(self->rebalance.ctx, p->topic, p->partition, &start)) {
                AP_ERROR("kafka", "%s [%d] not taken: its start offset is unknown", p->topic,
                         (int)p->partition);
                continue;
            }
            rd_kafka_topic_partition_list_add(accepted, p->topic, p->partition)->offset =
                start >= 0 ? start : RD_KAFKA_OFFSET_BEGINNING;
            AP_INFO("kafka", "assigned %s [%d] from offset %lld to %s", p->topic,
                    (int)p->partition, (long long)start, rd_kafka_name(rk));
        }
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, accepted);
        else
            rerr = rd_kafka_assign(rk, accepted);
        if (self->paused)
            rd_kafka_pause_partitions(rk, accepted);
        rd_kafka_topic_partition_list_destroy(accepted);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            self->rebalance.revoked(self->rebalance.ctx, parts->elems[i].topic,
                                    parts->elems[i].partition);
            AP_INFO("kafka", "revoked %s [%d] from %s", parts->elems[i].topic,
                    (int)parts->elems[i].partition, rd_kafka_name(rk));
        }
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rerr = rd_kafka_assign(rk, NULL);
    } else {
        AP_ERROR("kafka", "rebalance failed: %s", rd_kafka_err2str(err));
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rerr = rd_kafka_assign(rk, NULL);
    }
    if (error) {
        AP_ERROR("kafka", "assignment change failed: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (rerr) {
        AP_ERROR("kafka", "assignment change failed: %s", rd_kafka_err2str(rerr));
    }
}

ap_err_t ap_kafka_consumer_new(const ap_config_t *cfg, const ap_kafka_rebalance_t *rebalance,
                               ap_kafka_consumer_t **out)
{
    ap_kafka_consumer_t *self = calloc(1, sizeof *self);
    const char *const defaults[] = {"group.id", cfg->group_id,
                                    "client.id", "allocation-processor",
                                    "partition.assignment.strategy", "cooperative-sticky",
                                    "enable.auto.commit", "false",
                                    "enable.auto.offset.store", "false",
                                    "auto.offset.reset", "earliest",
                                    "enable.partition.eof", "false",
                                    /* Read ahead a few batches, not librdkafka's 64 MiB
                                     * or 100,000 messages a partition (each message costs
                                     * a few hundred bytes beyond its payload). */
                                    "queued.max.messages.kbytes", "8192",
                                    "queued.min.messages", "5000",
                                    /* A fetch is answered as soon as a record is there
                                     * (waiting for 64 KiB, up to 5 ms, cost a command
                                     * 2.5 ms on average out of a 10 ms p99 budget);
                                     * while none comes, the broker holds it 100 ms.
                                     * Under load each answer carries what piled up,
                                     * so batches stay large. */
                                    "fetch.wait.max.ms", "100",
                                    "fetch.min.bytes", "1",
                                    NULL};
    rd_kafka_conf_t *conf;

    if (!self)
        return AP_ERR_NOMEM;
    if ((conf = ap_kafka_conf_new(cfg, defaults))) {
        self->rebalance = *rebalance;
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
        self->rk = ap_kafka_new(RD_KAFKA_CONSUMER, conf, error_cb, self);
    }
    if (!self->rk) {
        free(self);
        return AP_ERR_CONFIG; /* logged */
    }
    rd_kafka_poll_set_consumer(self->rk);
    self->queue = rd_kafka_queue_get_consumer(self->rk);
    char limit[32];
    size_t size = sizeof limit;
    self->queue_limit = 5000;
    if (rd_kafka_conf_get(rd_kafka_conf(self->rk), "queued.min.messages", limit, &size) ==
        RD_KAFKA_CONF_OK)
        self->queue_limit = atoi(limit);
    *out = self;
    return AP_OK;
}

ap_err_t ap_kafka_consumer_subscribe(ap_kafka_consumer_t *consumer, char *const *topics,
                                     size_t ntopics)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)ntopics);
    for (size_t i = 0; i < ntopics; i++)
        rd_kafka_topic_partition_list_add(list, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t rerr = rd_kafka_subscribe(consumer->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (rerr) {
        AP_ERROR("kafka", "subscribe: %s", rd_kafka_err2str(rerr));
        return AP_ERR_UNAVAILABLE;
    }
    consumer->subscribed = true;
    return AP_OK;
}

/* The fetch wake-up (top of file): seeks every assigned partition whose position is known to
 * the record after the last one it handed out. Called with the consumer queue empty. */
static void wake_fetchers(ap_kafka_consumer_t *self)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    self->fetch_may_stop = false;
    if (self->paused || rd_kafka_assignment(self->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new(parts->cnt);
    if (rd_kafka_position(self->rk, parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < parts->cnt; i++) {
            const rd_kafka_topic_partition_t *p = &parts->elems[i], *last;
            int64_t offset = p->offset;
            /* RD_KAFKA_OFFSET_INVALID: nothing handed out since the assignment or a seek. */
            if (offset < 0 && self->sought &&
                (last = rd_kafka_topic_partition_list_find(self->sought, p->topic,
                                                           p->partition)))
                offset = last->offset;
            if (offset >= 0)
                rd_kafka_topic_partition_list_add(seek, p->topic, p->partition)->offset = offset;
        }
    }
    if (seek->cnt > 0) {
        rd_kafka_error_t *error = rd_kafka_seek_partitions(self->rk, seek, 0 /* async */);
        if (error) {
            AP_WARN("kafka", "waking the fetcher: %s", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        } else {
            self->fetch_wakes++;
            self->fetch_wake_partitions = seek->cnt;
            AP_DEBUG("kafka", "queue drained after a backlog: fetching again (%d partitions)",
                     seek->cnt);
        }
    }
    forget_sought(self);
    self->sought = seek;
    rd_kafka_topic_partition_list_destroy(parts);
}

ap_err_t ap_kafka_consumer_poll(ap_kafka_consumer_t *consumer, int timeout_ms, ap_record_t *rec)
{
    rd_kafka_message_t *msg = rd_kafka_consumer_poll(consumer->rk, timeout_ms);
    if (!msg) {
        if (consumer->fetch_may_stop && rd_kafka_queue_length(consumer->queue) == 0)
            wake_fetchers(consumer);
        return AP_ERR_NOT_FOUND;
    }
    if (!consumer->fetch_may_stop &&
        (int)rd_kafka_queue_length(consumer->queue) >= consumer->queue_limit / 2)
        consumer->fetch_may_stop = true;
    if (msg->err) {
        if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            AP_WARN("kafka", "consume: %s", rd_kafka_message_errstr(msg));
        rd_kafka_message_destroy(msg);
        return AP_ERR_NOT_FOUND;
    }
    consumer->suspect = consumer->unreachable = false;
    rec->topic = rd_kafka_topic_name(msg->rkt);
    rec->partition = msg->partition;
    rec->offset = msg->offset;
    rec->key = msg->key;
    rec->key_len = msg->key_len;
    rec->value = msg->payload;
    rec->value_len = msg->len;
    rec->timestamp_ms = rd_kafka_message_timestamp(msg, NULL);
    rec->handle = msg;
    return AP_OK;
}

void ap_kafka_record_release(ap_record_t *rec)
{
    if (rec->handle)
        rd_kafka_message_destroy(rec->handle);
    memset(rec, 0, sizeof *rec);
}

const char *ap_kafka_record_header(const ap_record_t *rec, const char *name, size_t *len)
{
    rd_kafka_headers_t *headers;
    const void *value;
    size_t size;

    if (rd_kafka_message_headers(rec->handle, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        !value)
        return NULL;
    *len = size;
    return value;
}

bool ap_kafka_record_header_at(const ap_record_t *rec, size_t i, ap_header_t *header)
{
    rd_kafka_headers_t *headers;
    const char *name;
    const void *value;
    size_t len;
    if (rd_kafka_message_headers(rec->handle, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_all(headers, i, &name, &value, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    *header = (ap_header_t){name, strlen(name), value, len};
    return true;
}

ap_err_t ap_kafka_consumer_seek(ap_kafka_consumer_t *consumer, const char *topic,
                                int32_t partition, int64_t offset)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic, partition)->offset =
        offset >= 0 ? offset : RD_KAFKA_OFFSET_BEGINNING;
    forget_sought(consumer);
    rd_kafka_error_t *error = rd_kafka_seek_partitions(consumer->rk, list, 5000);
    ap_err_t err = AP_OK;
    if (error) {
        AP_ERROR("kafka", "seek %s [%d]: %s", topic, (int)partition,
                 rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        err = AP_ERR_UNAVAILABLE;
    } else if (list->elems[0].err) {
        AP_ERROR("kafka", "seek %s [%d]: %s", topic, (int)partition,
                 rd_kafka_err2str(list->elems[0].err));
        err = AP_ERR_UNAVAILABLE;
    }
    rd_kafka_topic_partition_list_destroy(list);
    return err;
}

void ap_kafka_consumer_pause(ap_kafka_consumer_t *consumer, bool pause)
{
    rd_kafka_topic_partition_list_t *assignment = NULL;
    forget_sought(consumer);
    if (rd_kafka_assignment(consumer->rk, &assignment) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_resp_err_t rerr = pause ? rd_kafka_pause_partitions(consumer->rk, assignment)
                                         : rd_kafka_resume_partitions(consumer->rk, assignment);
        if (rerr)
            AP_WARN("kafka", "%s: %s", pause ? "pause" : "resume", rd_kafka_err2str(rerr));
        rd_kafka_topic_partition_list_destroy(assignment);
    }
    consumer->paused = pause;
}

bool ap_kafka_consumer_reachable(ap_kafka_consumer_t *consumer)
{
    /* After a connection failure (an idle broker connection closing is one too), ask for the
     * broker list: an answer settles it. Asked at most once a second while unanswered. */
    if ((consumer->suspect || consumer->unreachable) &&
        ap_kafka_now_ms() - consumer->last_probe >= 1000) {
        const struct rd_kafka_metadata *metadata = NULL;
        consumer->last_probe = ap_kafka_now_ms();
        bool answered = rd_kafka_metadata(consumer->rk, 0, NULL, &metadata, 500) ==
                        RD_KAFKA_RESP_ERR_NO_ERROR;
        if (metadata)
            rd_kafka_metadata_destroy(metadata);
        consumer->unreachable = !answered;
        consumer->suspect = false;
        if (answered)
            ap_denial_clear(AP_SERVICE_KAFKA);
    }
    return !consumer->unreachable;
}

uint64_t ap_kafka_consumer_fetch_wakes(const ap_kafka_consumer_t *consumer, int *partitions)
{
    if (partitions)
        *partitions = consumer->fetch_wake_partitions;
    return consumer->fetch_wakes;
}

bool ap_kafka_consumer_joined(ap_kafka_consumer_t *consumer)
{
    char *member = rd_kafka_memberid(consumer->rk);
    bool joined = member && *member;
    if (member)
        rd_kafka_mem_free(consumer->rk, member);
    return joined;
}

ap_err_t ap_kafka_consumer_end_offset(ap_kafka_consumer_t *consumer, const char *topic,
                                      int32_t partition, int64_t *end)
{
    int64_t low, high;
    if (rd_kafka_get_watermark_offsets(consumer->rk, topic, partition, &low, &high) ||
        high < 0)
        return AP_ERR_NOT_FOUND;
    *end = high;
    return AP_OK;
}

void ap_kafka_consumer_close(ap_kafka_consumer_t *consumer)
{
    if (!consumer)
        return;
    /* librdkafka 2.0.2 aborts (rd_kafka_sticky_assignor_state_destroy: Assertion
     * `assignor_state' failed, its issue #4312) when a cooperative-sticky member is destroyed
     * before its first assignment: a member still joining, as a second consumer thread or a
     * new replica is for a moment after its start. So a close waits for that assignment
     * first, a bounded time; records fetched meanwhile are dropped (their offsets live in
     * Postgres: the next owner reads them). */
    for (int64_t until = ap_kafka_now_ms() + FIRST_ASSIGNMENT_WAIT_MS;
         consumer->subscribed && !consumer->assigned && ap_kafka_now_ms() < until;) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(consumer->rk, 100);
        if (msg)
            rd_kafka_message_destroy(msg);
    }
    rd_kafka_resp_err_t rerr = rd_kafka_consumer_close(consumer->rk);
    if (rerr)
        AP_WARN("kafka", "leaving the group: %s", rd_kafka_err2str(rerr));
    forget_sought(consumer);
    rd_kafka_queue_destroy(consumer->queue);
    rd_kafka_destroy(consumer->rk);
    free(consumer);
}
