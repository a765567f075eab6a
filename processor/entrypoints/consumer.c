/*
 * consumer.c - the consumer loop: each record is decoded, run through the message bus and
 * committed to Postgres together with its partition's next offset, in one transaction.
 *
 * Exactly-once rests on that offset row. A partition is claimed on assignment (its owner
 * epoch is bumped, so an older owner can no longer commit) and every commit moves the offset
 * with a compare-and-set on (epoch, expected offset). Kafka's own group offsets are written
 * afterwards only to feed lag monitors; we never read them.
 *
 * Outcomes per record: applied; rejected by the domain or undecodable (logged with its
 * topic/partition/offset, and the offset still moves so the partition never blocks); or a
 * transient failure (Postgres gone, conflicts beyond the bus's retries), which rolls back
 * and retries the same record with backoff until it succeeds or we are asked to stop.
 */
#include "entrypoints/consumer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ap/codec.h"
#include "ap/kafka.h"
#include "ap/log.h"

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

/*
 * Runs the decoded command (or notes why there is none) and moves the offset, inside the
 * transaction the caller opened. Returns a transient error only when the whole record must
 * be retried.
 */
static ap_err_t apply(consumer_t *c, partition_t *p, const ap_record_t *rec, const ap_msg_t *cmd,
                      ap_err_t decoded, const char *decode_why)
{
    char why[512] = "";
    ap_err_t err = decoded;

    if (err == AP_OK)
        err = ap_bus_execute(&c->app->bus, cmd, why, sizeof why);
    else
        snprintf(why, sizeof why, "%s", decode_why);
    if (ap_err_is_transient(err))
        return err;

    if (err == AP_OK) {
        c->applied++;
        AP_DEBUG("consumer", "%s [%d] @%lld: %s applied", rec->topic, (int)rec->partition,
                 (long long)rec->offset, ap_msg_type_name(cmd->type));
    } else if (ap_err_is_rejection(err)) {
        c->rejected++;
        AP_WARN("consumer", "%s [%d] @%lld: %s rejected (%s): %s", rec->topic,
                (int)rec->partition, (long long)rec->offset, ap_msg_type_name(cmd->type),
                ap_err_reason(err), why);
    } else if (err == AP_ERR_DECODE) {
        c->undecodable++;
        AP_WARN("consumer", "%s [%d] @%lld: undecodable, skipped: %s", rec->topic,
                (int)rec->partition, (long long)rec->offset, why);
    } else {
        c->failed++;
        AP_ERROR("consumer", "%s [%d] @%lld: %s failed, skipped: %s%s%s", rec->topic,
                 (int)rec->partition, (long long)rec->offset, ap_msg_type_name(cmd->type),
                 ap_strerror(err), why[0] ? ": " : "", why);
    }
    return ap_uow_advance_offset(c->app->deps.uow, c->cfg->group_id, rec->topic, rec->partition,
                                 p->epoch, p->next_offset, rec->offset + 1);
}

static void process(consumer_t *c, const ap_record_t *rec)
{
    ap_uow_t *uow = c->app->deps.uow;
    partition_t *p = find_partition(c, rec->topic, rec->partition, false);
    char why[512] = "";
    ap_msg_t cmd;
    bool overrides;

    if (!p || !p->owned)
        return; /* revoked or fenced: the new owner reads it */
    if (rec->offset < p->next_offset)
        return; /* applied already (a re-fetch after a seek) */

    ap_msg_type_t hint = type_hint(c, rec, &overrides);
    ap_err_t decoded =
        ap_command_decode(rec->value, rec->value_len, hint, overrides, &cmd, why, sizeof why);

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

int ap_consumer_run(const ap_config_t *cfg, ap_app_t *app, volatile sig_atomic_t *stop)
{
    consumer_t c = {.cfg = cfg, .app = app, .stop = stop};
    ap_kafka_rebalance_t rebalance = {on_assigned, on_revoked, &c};
    ap_record_t rec;
    int rc = 1;

    if (ap_kafka_consumer_new(cfg, &rebalance, &c.kafka))
        goto out;
    /* Topics are created before subscribing so the first assignment sees every partition. */
    for (unsigned attempt = 0; !*stop; attempt++) {
        if (ap_kafka_ensure_topics(c.kafka, cfg->command_topics, cfg->ncommand_topics,
                                   cfg->topic_partitions, cfg->topic_replication_factor,
                                   10000) == AP_OK)
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
