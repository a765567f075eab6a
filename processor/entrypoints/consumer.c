/*
 * consumer.c - the consumer loop: each record is decoded, run through the message bus and
 * committed to Postgres together with its partition's next offset, in one transaction.
 *
 * Exactly-once rests on that offset row. A partition is claimed on assignment (its owner
 * epoch is bumped, so an older owner can no longer commit) and every commit moves the offset
 * with a compare-and-set on (epoch, expected offset). Kafka's own group offsets are written
 * afterwards only to feed lag monitors; we never read them.
 *
 * Outcomes per record, each committed with the offset so none is lost or doubled: applied;
 * refused by the domain (a CommandRejected event through the outbox); undecodable, or
 * failed for a reason no retry can fix (the input copied to the dead-letter topic); or a
 * transient failure (Postgres gone, conflicts beyond the bus's retries), which rolls back
 * and retries the same record with backoff until it succeeds or we are asked to stop. The
 * first three move the offset, so a partition never blocks on bad input.
 */
#include "entrypoints/consumer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ap/codec.h"
#include "ap/kafka.h"
#include "ap/log.h"
#include "ap/outbox.h"

#define POLL_MS 100
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define STATS_EVERY_MS 60000

typedef struct partition {
    char topic[256];
    int32_t partition;
    int64_t epoch;
    int64_t next_offset; /* as stored in Postgres; -1 when nothing was ever applied */
    bool owned;
} partition_t;

typedef struct consumer {
    const ap_config_t *cfg;
    ap_app_t *app;
    ap_outbox_t *outbox;
    ap_avro_codec_t *codec;
    ap_kafka_consumer_t *kafka;
    volatile sig_atomic_t *stop;
    partition_t *parts;
    size_t nparts;
    uint64_t applied, rejected, undecodable, failed;
} consumer_t;

static partition_t *find_partition(consumer_t *c, const char *topic, int32_t partition,
                                   bool create)
{
    for (size_t i = 0; i < c->nparts; i++) {
        if (c->parts[i].partition == partition && strcmp(c->parts[i].topic, topic) == 0)
            return &c->parts[i];
    }
    if (!create)
        return NULL;
    partition_t *grown = realloc(c->parts, (c->nparts + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    c->parts = grown;
    partition_t *p = &c->parts[c->nparts++];
    memset(p, 0, sizeof *p);
    snprintf(p->topic, sizeof p->topic, "%s", topic);
    p->partition = partition;
    return p;
}

/* Sleeps for a jittered, doubling backoff; returns false when asked to stop meanwhile. */
static bool back_off(consumer_t *c, unsigned attempt)
{
    ap_clock_t *clock = c->app->deps.clock;
    int64_t cap = BACKOFF_MIN_MS;
    for (unsigned i = 0; i < attempt && cap < BACKOFF_MAX_MS; i++)
        cap *= 2;
    if (cap > BACKOFF_MAX_MS)
        cap = BACKOFF_MAX_MS;
    int64_t wait = cap / 2 + (int64_t)(ap_clock_random(clock) % (uint64_t)(cap / 2 + 1));
    for (int64_t slept = 0; slept < wait && !*c->stop; slept += 50)
        ap_clock_sleep_ms(clock, 50);
    return !*c->stop;
}

/* ---------------------------------------------------------------- rebalance callbacks */

static ap_err_t on_assigned(void *ctx, const char *topic, int32_t partition, int64_t *start)
{
    consumer_t *c = ctx;
    ap_uow_t *uow = c->app->deps.uow;
    partition_t *p = find_partition(c, topic, partition, true);
    int64_t epoch, next;
    ap_err_t err;

    if (!p)
        return AP_ERR_NOMEM;
    /* Without its stored offset we cannot read a partition safely: wait for Postgres. */
    for (unsigned attempt = 0;; attempt++) {
        if ((err = ap_uow_begin(uow)) == AP_OK) {
            err = ap_uow_claim_partition(uow, c->cfg->group_id, topic, partition, &epoch, &next);
            if (err == AP_OK)
                err = ap_uow_commit(uow);
            else
                ap_uow_rollback(uow);
        }
        if (err == AP_OK)
            break;
        AP_WARN("consumer", "claiming %s [%d]: %s; retrying", topic, (int)partition,
                ap_strerror(err));
        if (!ap_err_is_transient(err) || !back_off(c, attempt))
            return err;
    }
    p->epoch = epoch;
    p->next_offset = next;
    p->owned = true;
    *start = next;
    return AP_OK;
}

static void on_revoked(void *ctx, const char *topic, int32_t partition)
{
    partition_t *p = find_partition(ctx, topic, partition, false);
    if (p)
        p->owned = false;
}

/* ---------------------------------------------------------------- one record */

/* The command type a record's header names (which wins) or its typed topic implies. */
static ap_msg_type_t type_hint(const consumer_t *c, const ap_record_t *rec, bool *overrides)
{
    size_t len;
    const char *header = ap_kafka_record_header(rec, "command-type", &len);
    *overrides = header != NULL;
    if (header)
        return ap_msg_type_parse(header, len);

    size_t plen = strlen(c->cfg->topic_prefix), slen = strlen(AP_TYPED_TOPIC_SUFFIX);
    if (strncmp(rec->topic, c->cfg->topic_prefix, plen) == 0 &&
        strncmp(rec->topic + plen, AP_TYPED_TOPIC_SUFFIX, slen) == 0) {
        const char *name = rec->topic + plen + slen;
        return ap_msg_type_parse(name, strlen(name));
    }
    return AP_MSG_NONE;
}

/* Copies a header's text into `dst` (bounded); false when the record has no such header. */
static bool header_text(const ap_record_t *rec, const char *name, char *dst, size_t size)
{
    size_t len;
    const char *value = ap_kafka_record_header(rec, name, &len);
    if (!value || len == 0 || len >= size || memchr(value, '\0', len))
        return false;
    memcpy(dst, value, len);
    dst[len] = '\0';
    return true;
}

/*
 * The command's provenance. Without ids from the sender, the record's own coordinates stand
 * in: they are stable, so a record processed again after a crash yields the same headers.
 */
static void read_meta(const ap_record_t *rec, ap_msg_meta_t *meta)
{
    char where[AP_STR_SIZE];
    snprintf(where, sizeof where, "%s/%d/%lld", rec->topic, (int)rec->partition,
             (long long)rec->offset);
    memset(meta, 0, sizeof *meta);
    header_text(rec, "message-id", meta->message_id, sizeof meta->message_id);
    if (!header_text(rec, "correlation-id", meta->correlation_id, sizeof meta->correlation_id))
        snprintf(meta->correlation_id, sizeof meta->correlation_id, "%s", where);
    snprintf(meta->causation_id, sizeof meta->causation_id, "%s",
             meta->message_id[0] ? meta->message_id : where);
    header_text(rec, "traceparent", meta->traceparent, sizeof meta->traceparent);
}

static ap_err_t decode(consumer_t *c, const ap_record_t *rec, ap_msg_t *cmd, char *why,
                       size_t whylen)
{
    ap_err_t err;
    if (ap_avro_is_framed(rec->value, rec->value_len)) {
        err = ap_avro_decode_command(c->codec, rec->value, rec->value_len, cmd, why, whylen);
    } else {
        bool overrides;
        ap_msg_type_t hint = type_hint(c, rec, &overrides);
        err = ap_command_decode(rec->value, rec->value_len, hint, overrides, cmd, why, whylen);
    }
    read_meta(rec, &cmd->meta);
    return err;
}

static ap_err_t dead_letter(consumer_t *c, const ap_record_t *rec, const char *reason)
{
    ap_header_t headers[64];
    size_t n = 0;
    while (n < sizeof headers / sizeof *headers &&
           ap_kafka_record_header_at(rec, n, &headers[n].name, &headers[n].value,
                                     &headers[n].len))
        n++;
    return ap_outbox_dead_letter(c->outbox, rec->key, rec->key_len, rec->value, rec->value_len,
                                 headers, n, reason, rec->topic, rec->partition, rec->offset);
}

static ap_err_t reject(consumer_t *c, const ap_record_t *rec, const ap_msg_t *cmd,
                       ap_err_t err, const char *why)
{
    ap_rejection_t rejection = {.command_type = cmd->type,
                                .source_partition = rec->partition,
                                .source_offset = rec->offset};
    snprintf(rejection.reason, sizeof rejection.reason, "%s", ap_err_reason(err));
    snprintf(rejection.message, sizeof rejection.message, "%s", why);
    snprintf(rejection.source_topic, sizeof rejection.source_topic, "%s", rec->topic);
    return ap_outbox_reject(c->outbox, &rejection, &cmd->meta, rec->key, rec->key_len);
}

/*
 * Runs the decoded command (or reports why there is none) and moves the offset, inside the
 * transaction the caller opened. Returns a transient error only when the whole record must
 * be retried.
 */
static ap_err_t apply(consumer_t *c, partition_t *p, const ap_record_t *rec, const ap_msg_t *cmd,
                      ap_err_t decoded, const char *decode_why)
{
    char why[512] = "", reason[600];
    ap_err_t err = decoded, reported;

    if (err == AP_OK)
        err = ap_bus_execute(&c->app->bus, cmd, why, sizeof why);
    else
        snprintf(why, sizeof why, "%s", decode_why);
    if (ap_err_is_transient(err))
        return err;

    if (err == AP_OK) {
        c->applied++;
        reported = AP_OK;
        AP_DEBUG("consumer", "%s [%d] @%lld: %s applied", rec->topic, (int)rec->partition,
                 (long long)rec->offset, ap_msg_type_name(cmd->type));
    } else if (ap_err_is_rejection(err)) {
        c->rejected++;
        AP_WARN("consumer", "%s [%d] @%lld: %s rejected (%s): %s", rec->topic,
                (int)rec->partition, (long long)rec->offset, ap_msg_type_name(cmd->type),
                ap_err_reason(err), why);
        reported = reject(c, rec, cmd, err, why);
    } else if (err == AP_ERR_DECODE) {
        c->undecodable++;
        AP_WARN("consumer", "%s [%d] @%lld: undecodable, dead-lettered: %s", rec->topic,
                (int)rec->partition, (long long)rec->offset, why);
        reported = dead_letter(c, rec, why);
    } else {
        c->failed++;
        snprintf(reason, sizeof reason, "%s failed: %s%s%s", ap_msg_type_name(cmd->type),
                 ap_strerror(err), why[0] ? ": " : "", why);
        AP_ERROR("consumer", "%s [%d] @%lld: %s; dead-lettered", rec->topic,
                 (int)rec->partition, (long long)rec->offset, reason);
        reported = dead_letter(c, rec, reason);
    }
    if (reported)
        return reported;
    return ap_uow_advance_offset(c->app->deps.uow, c->cfg->group_id, rec->topic, rec->partition,
                                 p->epoch, p->next_offset, rec->offset + 1);
}

static void process(consumer_t *c, const ap_record_t *rec)
{
    ap_uow_t *uow = c->app->deps.uow;
    partition_t *p = find_partition(c, rec->topic, rec->partition, false);
    char why[512] = "";
    ap_msg_t cmd;

    if (!p || !p->owned)
        return; /* revoked or fenced: the new owner reads it */
    if (rec->offset < p->next_offset)
        return; /* applied already (a re-fetch after a seek) */

    ap_err_t decoded = decode(c, rec, &cmd, why, sizeof why);

    for (unsigned attempt = 0;; attempt++) {
        ap_err_t err = ap_uow_begin(uow);
        if (err == AP_OK) {
            err = apply(c, p, rec, &cmd, decoded, why);
            if (err == AP_OK)
                err = ap_uow_commit(uow);
            else
                ap_uow_rollback(uow);
        }
        if (err == AP_OK) {
            p->next_offset = rec->offset + 1;
            ap_kafka_consumer_report_offset(c->kafka, rec->topic, rec->partition,
                                            p->next_offset);
            return;
        }
        if (err == AP_ERR_FENCED) {
            AP_WARN("consumer", "%s [%d]: another consumer owns it now; stopped reading it",
                    rec->topic, (int)rec->partition);
            p->owned = false;
            return;
        }
        AP_WARN("consumer", "%s [%d] @%lld: %s; retrying", rec->topic, (int)rec->partition,
                (long long)rec->offset, ap_strerror(err));
        if (!back_off(c, attempt)) {
            /* Not applied and not acknowledged: read again by whoever owns it next. */
            return;
        }
    }
}

/* ---------------------------------------------------------------- the loop */

/* Every topic the processor reads or writes: commands, events, rejections, dead letters. */
static ap_err_t create_topics(const ap_config_t *cfg)
{
    static const ap_msg_type_t events[] = {AP_EVT_BATCH_CREATED, AP_EVT_BATCH_QUANTITY_CHANGED,
                                           AP_EVT_ALLOCATED, AP_EVT_DEALLOCATED,
                                           AP_EVT_OUT_OF_STOCK};
    enum { NOUT = sizeof events / sizeof *events + 2 };
    char out[NOUT][400];
    char *topics[64 + NOUT];
    size_t n = 0;

    for (size_t i = 0; i < cfg->ncommand_topics && n < 64; i++)
        topics[n++] = cfg->command_topics[i];
    for (size_t i = 0; i < sizeof events / sizeof *events; i++)
        ap_outbox_event_topic(cfg->topic_prefix, events[i], out[i], sizeof out[i]);
    snprintf(out[NOUT - 2], sizeof out[0], "%s.events.command_rejected", cfg->topic_prefix);
    snprintf(out[NOUT - 1], sizeof out[0], "%s.dead_letter", cfg->topic_prefix);
    for (size_t i = 0; i < NOUT; i++)
        topics[n++] = out[i];
    return ap_kafka_create_topics(cfg, topics, n, 10000);
}

int ap_consumer_run(const ap_config_t *cfg, ap_app_t *app, ap_outbox_t *outbox,
                    ap_avro_codec_t *codec, volatile sig_atomic_t *stop)
{
    consumer_t c = {.cfg = cfg, .app = app, .outbox = outbox, .codec = codec, .stop = stop};
    ap_kafka_rebalance_t rebalance = {on_assigned, on_revoked, &c};
    ap_record_t rec;
    int rc = 1;

    if (ap_kafka_consumer_new(cfg, &rebalance, &c.kafka))
        goto out;
    /* Topics are created before subscribing so the first assignment sees every partition. */
    for (unsigned attempt = 0; !*stop; attempt++) {
        if (create_topics(cfg) == AP_OK)
            break;
        if (!back_off(&c, attempt))
            break;
    }
    if (*stop || ap_kafka_consumer_subscribe(c.kafka, cfg->command_topics, cfg->ncommand_topics))
        goto out;
    AP_INFO("consumer", "consuming %s as group %s", cfg->command_topics[0], cfg->group_id);

    int64_t last_stats = ap_clock_now_ms(app->deps.clock);
    while (!*stop) {
        if (ap_kafka_consumer_poll(c.kafka, POLL_MS, &rec) == AP_OK) {
            process(&c, &rec);
            ap_kafka_record_release(&rec);
        }
        int64_t now = ap_clock_now_ms(app->deps.clock);
        if (now - last_stats >= STATS_EVERY_MS) {
            last_stats = now;
            AP_INFO("consumer", "applied=%llu rejected=%llu undecodable=%llu failed=%llu",
                    (unsigned long long)c.applied, (unsigned long long)c.rejected,
                    (unsigned long long)c.undecodable, (unsigned long long)c.failed);
        }
    }
    rc = 0;
out:
    AP_INFO("consumer", "stopping: applied=%llu rejected=%llu undecodable=%llu failed=%llu",
            (unsigned long long)c.applied, (unsigned long long)c.rejected,
            (unsigned long long)c.undecodable, (unsigned long long)c.failed);
    ap_kafka_consumer_close(c.kafka);
    free(c.parts);
    return rc;
}
