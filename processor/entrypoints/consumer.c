/*
 * consumer.c - the consumer loop: each record is decoded, run through the message bus and
 * committed to Postgres together with its partition's next offset, in one transaction.
 *
 * Exactly-once rests on that offset row. A partition is claimed on assignment (its owner
 * epoch is bumped, so an older owner can no longer commit) and every commit moves the offset
 * with a compare-and-set on (epoch, expected offset). Nothing is committed to Kafka's group
 * offsets (kafka_consumer.h says why).
 *
 * Records are taken in batches (what has been fetched, up to BATCH_MAX_MESSAGES) and a batch
 * is one transaction; each command runs in a savepoint of its own, so it succeeds or fails
 * alone. Outcomes per record, committed with the offset so none is lost or doubled: applied;
 * refused by the domain (a CommandRejected event through the outbox); undecodable, or failed
 * for a reason no retry can fix (the input copied to the dead-letter topic). A transient
 * failure (Postgres gone, conflicts beyond the bus's retries) rolls the batch back, and it is
 * retried with backoff until it succeeds or we are asked to stop. Bad input never blocks a
 * partition.
 *
 * While the outbox relay is far behind (BACKPRESSURE_MAX_ROWS / _AGE_MS), fetching pauses.
 * The backlog is judged before every batch is taken, so it exceeds the limit by one batch's
 * events at most, however fast or slow the machine.
 */
#include "entrypoints/consumer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ap/array.h"
#include "ap/backoff.h"
#include "ap/codec.h"
#include "ap/kafka_consumer.h"
#include "ap/log.h"
#include "ap/outbox.h"
#include "ap/outcomes.h"
#include "ap/pg.h"
#include "ap/strset.h"
#include "ap/topics.h"

#define POLL_MS 100
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define STATS_EVERY_MS 60000
#define BACKPRESSURE_EVERY_MS 50        /* measure the backlog at least this often */
#define BACKPRESSURE_COUNT_EVERY_MS 1000 /* count its rows at most this often, unless ... */
#define LAG_EVERY_MS 1000         /* the lag metric is refreshed this often */
#define ASK_IDS_BATCHES 100 /* batches that look message ids up first after one met a repeat */

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
    ap_health_t *health;
    const ap_instruments_t *ins; /* may be NULL */
    struct item *current;        /* the record whose command the bus is running */
    atomic_bool *stop;
    partition_t *parts;
    size_t nparts, parts_cap;
    uint64_t applied, rejected, undecodable, failed;
    /* The backlog as last measured, and the outbox's row count then: the rows written since
     * bound how far it can have grown. */
    bool backlog_known, backlog_counted;
    int64_t backlog_rows, backlog_measured_ms, backlog_from_id; /* ap_outbox_backlog's floor */
    int64_t backlog_counted_ms;
    uint64_t backlog_written;
    /* Ask Postgres which of a batch's message ids have an outcome before applying it (see
     * mark_duplicates) for this many more batches: set to ASK_IDS_BATCHES by a batch that met
     * an id applied before, so a producer that keeps repeating costs one failed attempt per
     * ASK_IDS_BATCHES batches at most. */
    unsigned ask_ids;
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
    if (!AP_ARRAY_RESERVE(c->parts, c->parts_cap, c->nparts + 1))
        return NULL;
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
    int64_t wait =
        ap_backoff_jittered_ms(BACKOFF_MIN_MS, BACKOFF_MAX_MS, attempt, ap_clock_random(clock));
    for (int64_t slept = 0; slept < wait && !atomic_load(c->stop); slept += 50) {
        atomic_store(&c->health->heartbeat_ms, ap_health_now_ms()); /* waiting is living */
        ap_clock_sleep_ms(clock, 50);
    }
    return !atomic_load(c->stop);
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
    consumer_t *c = ctx;
    partition_t *p = find_partition(c, topic, partition, false);
    if (p)
        p->owned = false;
    if (c->ins) {
        char number[16];
        snprintf(number, sizeof number, "%d", (int)partition);
        ap_metric_remove(c->ins->consumer_lag, topic, number);
    }
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

    return ap_topic_command_type(c->cfg->topic_prefix, rec->topic);
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
    bool overrides;
    ap_msg_type_t hint = type_hint(c, rec, &overrides);
    ap_err_t err = ap_command_decode(c->codec, rec->value, rec->value_len, hint, overrides, cmd,
                                     why, whylen);
    read_meta(rec, &cmd->meta);
    return err;
}

static ap_err_t dead_letter(consumer_t *c, const ap_record_t *rec, const char *reason)
{
    ap_header_t headers[64];
    size_t n = 0;
    while (n < sizeof headers / sizeof *headers &&
           ap_kafka_record_header_at(rec, n, &headers[n]))
        n++;
    ap_dead_letter_t letter = {.key = rec->key,
                               .key_len = rec->key_len,
                               .value = rec->value,
                               .value_len = rec->value_len,
                               .headers = headers,
                               .nheaders = n,
                               .reason = reason,
                               .source_topic = rec->topic,
                               .source_partition = rec->partition,
                               .source_offset = rec->offset};
    return ap_outbox_dead_letter(c->outbox, &letter);
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

/* ---------------------------------------------------------------- one batch */

typedef enum { APPLIED, REJECTED, UNDECODABLE, FAILED, SKIPPED, DUPLICATE } outcome_t;

/* A record of the batch in hand, decoded once, with what became of it. */
typedef struct item {
    ap_record_t rec;
    size_t part; /* index into consumer_t.parts */
    ap_msg_t cmd;
    ap_err_t decoded;
    ap_err_t result;
    outcome_t outcome;
    char why[512];
    /* With a message id: already processed (in an earlier batch or earlier in this one). */
    bool duplicate;
    /* What an applied Allocate did, as the bus's observer saw it. */
    char batchref[AP_STR_SIZE];
    bool out_of_stock;
} item_t;

/*
 * Runs one record's command (or reports why there is none) inside the batch's transaction.
 * Returns a transient error only when the whole batch must be retried.
 */
static ap_err_t apply(consumer_t *c, item_t *item)
{
    char reason[600];

    /* A writer schema the registry could not serve a moment ago: ask again. */
    if (ap_err_is_transient(item->decoded))
        item->decoded = decode(c, &item->rec, &item->cmd, item->why, sizeof item->why);
    ap_err_t err = item->decoded;

    if (err == AP_OK) {
        item->why[0] = '\0';
        err = ap_bus_execute(&c->app->bus, &item->cmd, item->why, sizeof item->why);
    }
    if (ap_err_is_transient(err))
        return err;
    item->result = err;
    if (err == AP_OK) {
        item->outcome = APPLIED;
        return AP_OK;
    }
    if (ap_err_is_rejection(err)) {
        item->outcome = REJECTED;
        return reject(c, &item->rec, &item->cmd, err, item->why);
    }
    if (err == AP_ERR_DECODE) {
        item->outcome = UNDECODABLE;
        return dead_letter(c, &item->rec, item->why);
    }
    item->outcome = FAILED;
    snprintf(reason, sizeof reason, "%s failed: %s%s%s", ap_msg_type_name(item->cmd.type),
             ap_strerror(err), item->why[0] ? ": " : "", item->why);
    snprintf(item->why, sizeof item->why, "%.500s", reason);
    return dead_letter(c, &item->rec, item->why);
}

/* Says, once the batch is committed, what became of each record that was not applied. */
static void report(consumer_t *c, const item_t *item)
{
    const ap_record_t *rec = &item->rec;
    if (c->ins && item->outcome != SKIPPED) {
        static const char *const names[] = {"applied", "rejected", "dead_lettered", "failed",
                                            "", "duplicate"};
        const char *type = ap_msg_is_command(item->cmd.type) ? ap_msg_type_name(item->cmd.type)
                                                             : "unknown";
        ap_metric_add(c->ins->commands, 1, type, names[item->outcome]);
    }
    switch (item->outcome) {
    case APPLIED:
        c->applied++;
        AP_DEBUG("consumer", "%s [%d] @%lld: %s applied", rec->topic, (int)rec->partition,
                 (long long)rec->offset, ap_msg_type_name(item->cmd.type));
        break;
    case REJECTED:
        c->rejected++;
        AP_WARN("consumer", "%s [%d] @%lld: %s rejected (%s): %s", rec->topic,
                (int)rec->partition, (long long)rec->offset, ap_msg_type_name(item->cmd.type),
                ap_err_reason(item->result), item->why);
        break;
    case UNDECODABLE:
        c->undecodable++;
        AP_WARN("consumer", "%s [%d] @%lld: undecodable, dead-lettered: %s", rec->topic,
                (int)rec->partition, (long long)rec->offset, item->why);
        break;
    case FAILED:
        c->failed++;
        AP_ERROR("consumer", "%s [%d] @%lld: %s; dead-lettered", rec->topic, (int)rec->partition,
                 (long long)rec->offset, item->why);
        break;
    case DUPLICATE:
        AP_INFO("consumer", "%s [%d] @%lld: %s with message-id %s was processed already; skipped",
                rec->topic, (int)rec->partition, (long long)rec->offset,
                ap_msg_type_name(item->cmd.type), item->cmd.meta.message_id);
        break;
    case SKIPPED:
        break;
    }
}

/* ---------------------------------------------------------------- outcomes by message id */

/* Sets the log context of this thread to a record's command (LOG_FORMAT=json). */
static void log_context(const item_t *item)
{
    const ap_msg_meta_t *meta = &item->cmd.meta;
    ap_log_context_set(meta->correlation_id,
                       meta->message_id[0] ? meta->message_id : meta->causation_id);
}

/* ap_event_observer_fn: what the Allocate in hand did, for its recorded outcome. */
static void observe_event(void *ctx, const ap_msg_t *event)
{
    consumer_t *c = ctx;
    item_t *item = c->current;
    if (!item)
        return;
    if (!event) { /* a new attempt: forget the last one */
        item->batchref[0] = '\0';
        item->out_of_stock = false;
        return;
    }
    if (item->cmd.type != AP_CMD_ALLOCATE || item->batchref[0] || item->out_of_stock ||
        strcmp(event->sku, item->cmd.sku) != 0)
        return;
    if (event->type == AP_EVT_ALLOCATED && strcmp(event->orderid, item->cmd.orderid) == 0)
        memcpy(item->batchref, event->batchref, sizeof item->batchref);
    else if (event->type == AP_EVT_OUT_OF_STOCK)
        item->out_of_stock = true;
}

/*
 * Marks the records whose message id came earlier in this batch as duplicates, and with
 * `ask` those whose id has an outcome in Postgres already (one query for the batch; none when
 * no record has an id); meeting one of those makes the next ASK_IDS_BATCHES batches ask.
 *
 * Without `ask` an id applied in an earlier batch goes unnoticed here, but not for long: its
 * outcome's insert then fails on the table's primary key, in the same transaction as
 * everything the batch did, which makes it a conflict, and the batch is rolled back and
 * retried, asking this time. A repeated id is rare (a producer's retry), so most batches
 * save the query's round trip, and one that meets a repeat pays for it with one attempt (and
 * makes the next ASK_IDS_BATCHES batches ask first).
 */
static ap_err_t mark_duplicates(consumer_t *c, item_t *items, size_t n, bool ask)
{
    const char **ids = NULL;
    size_t *which = NULL, nids = 0;
    bool *seen = NULL;
    ap_strset_t earlier; /* the ids met earlier in the batch */
    ap_err_t err = AP_OK;

    for (size_t i = 0; i < n; i++) {
        items[i].duplicate = false;
        nids += items[i].cmd.meta.message_id[0] != '\0';
    }
    if (nids == 0)
        return AP_OK;
    ids = calloc(nids, sizeof *ids);
    which = calloc(nids, sizeof *which);
    seen = calloc(nids, sizeof *seen);
    if (!ids || !which || !seen) {
        err = AP_ERR_NOMEM;
        goto out;
    }
    nids = 0;
    for (size_t i = 0; i < n; i++) {
        const partition_t *p = &c->parts[items[i].part];
        if (!items[i].cmd.meta.message_id[0] || !p->owned || items[i].rec.offset < p->next_offset)
            continue;
        which[nids] = i;
        ids[nids++] = items[i].cmd.meta.message_id;
    }
    if (ask && nids && (err = ap_outcomes_seen(c->app->deps.uow, ids, nids, seen)))
        goto out;
    if (!ap_strset_init(&earlier, nids)) {
        err = AP_ERR_NOMEM;
        goto out;
    }
    for (size_t k = 0; k < nids; k++) {
        ap_strset_add_t added = ap_strset_add(&earlier, ids[k], k, NULL);
        if (added == AP_STRSET_NOMEM) {
            err = AP_ERR_NOMEM;
            break;
        }
        items[which[k]].duplicate = seen[k] || added == AP_STRSET_FOUND;
        if (seen[k])
            c->ask_ids = ASK_IDS_BATCHES;
    }
    ap_strset_free(&earlier);
out:
    free(ids);
    free(which);
    free(seen);
    return err;
}

/* Records the outcome of every record with a message id that was processed in this batch. */
static ap_err_t record_outcomes(consumer_t *c, const item_t *items, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += items[i].cmd.meta.message_id[0] && items[i].outcome != SKIPPED &&
                 items[i].outcome != DUPLICATE;
    if (count == 0)
        return AP_OK;
    ap_command_outcome_t *outcomes = calloc(count, sizeof *outcomes);
    if (!outcomes)
        return AP_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const item_t *item = &items[i];
        if (!item->cmd.meta.message_id[0] || item->outcome == SKIPPED ||
            item->outcome == DUPLICATE)
            continue;
        ap_command_outcome_t *o = &outcomes[k++];
        memcpy(o->message_id, item->cmd.meta.message_id, sizeof o->message_id);
        if (ap_msg_is_command(item->cmd.type))
            snprintf(o->command_type, sizeof o->command_type, "%s",
                     ap_msg_type_name(item->cmd.type));
        switch (item->outcome) {
        case APPLIED:
            o->kind = AP_OUTCOME_APPLIED;
            memcpy(o->batchref, item->batchref, sizeof o->batchref);
            o->out_of_stock = item->out_of_stock;
            break;
        case REJECTED:
            o->kind = AP_OUTCOME_REJECTED;
            snprintf(o->reason, sizeof o->reason, "%s", ap_err_reason(item->result));
            snprintf(o->message, sizeof o->message, "%s", item->why);
            break;
        case UNDECODABLE:
            o->kind = AP_OUTCOME_DEAD_LETTERED;
            snprintf(o->message, sizeof o->message, "%s", item->why);
            break;
        default:
            o->kind = AP_OUTCOME_FAILED;
            snprintf(o->message, sizeof o->message, "%s", item->why);
            break;
        }
    }
    ap_err_t err = ap_outcomes_record(c->app->deps.uow, outcomes, count);
    free(outcomes);
    return err;
}

/*
 * One attempt at the batch: every record of a partition we own, then each partition's offset
 * moved past its last record, all in one transaction. Records of partitions we no longer
 * own, or already applied (a re-fetch), are skipped; so are repeated message ids, those
 * applied before only with `check_ids` (mark_duplicates).
 */
static ap_err_t try_batch(consumer_t *c, item_t *items, size_t n, int64_t *last,
                          const char **skus, bool check_ids)
{
    ap_uow_t *uow = c->app->deps.uow;
    ap_err_t err = ap_uow_begin(uow);
    size_t nskus = 0, nrefs = 0;
    const char **orderids = skus + n;

    for (size_t i = 0; i < c->nparts; i++)
        last[i] = -1;
    /* The batch's products in one round trip, rather than one each, and the lines of its
     * Allocates' orders in one more. */
    for (size_t i = 0; i < n && err == AP_OK; i++) {
        if (items[i].decoded != AP_OK)
            continue;
        if (items[i].cmd.sku[0]) {
            orderids[nskus] = items[i].cmd.type == AP_CMD_ALLOCATE ? items[i].cmd.orderid : NULL;
            skus[nskus++] = items[i].cmd.sku;
        } else if (items[i].cmd.ref[0]) { /* by batch ref: fills `skus` from the end */
            skus[n - ++nrefs] = items[i].cmd.ref;
        }
    }
    if (err == AP_OK)
        ap_uow_prefetch(uow, skus, orderids, nskus, skus + n - nrefs, nrefs);
    if (err == AP_OK)
        err = mark_duplicates(c, items, n, check_ids);
    for (size_t i = 0; i < n && err == AP_OK; i++) {
        item_t *item = &items[i];
        const partition_t *p = &c->parts[item->part];
        item->outcome = SKIPPED;
        if (!p->owned || item->rec.offset < p->next_offset)
            continue;
        if (item->duplicate) {
            item->outcome = DUPLICATE;
            last[item->part] = item->rec.offset;
            continue;
        }
        log_context(item);
        c->current = item;
        item->batchref[0] = '\0';
        item->out_of_stock = false;
        if ((err = apply(c, item)) == AP_OK)
            last[item->part] = item->rec.offset;
        c->current = NULL;
        ap_log_context_clear();
    }
    if (err == AP_OK)
        err = record_outcomes(c, items, n);
    for (size_t i = 0; i < c->nparts && err == AP_OK; i++) {
        partition_t *p = &c->parts[i];
        if (last[i] < 0)
            continue;
        err = ap_uow_advance_offset(uow, c->cfg->group_id, p->topic, p->partition, p->epoch,
                                    p->next_offset, last[i] + 1);
        if (err == AP_ERR_FENCED) {
            AP_WARN("consumer", "%s [%d]: another consumer owns it now; stopped reading it",
                    p->topic, (int)p->partition);
            p->owned = false;
        }
    }
    if (err == AP_OK)
        err = ap_uow_commit(uow);
    else
        ap_uow_rollback(uow);
    return err;
}

static void process_batch(consumer_t *c, item_t *items, size_t n)
{
    ap_uow_t *uow = c->app->deps.uow;
    int64_t *last = calloc(c->nparts ? c->nparts : 1, sizeof *last);
    const char **skus = calloc(2 * n, sizeof *skus); /* skus or refs, then orderids */
    if (!last || !skus) {
        AP_ERROR("consumer", "out of memory; the batch will be read again");
        goto out;
    }
    int64_t started = ap_clock_now_ms(c->app->deps.clock);
    bool ask_ids = c->ask_ids > 0; /* see mark_duplicates */
    if (ask_ids)
        c->ask_ids--;
    for (unsigned attempt = 0;; attempt++) {
        /* Writes go in bulk at first; should one fail, the batch is retried with each write
         * sent at once, so a failure is pinned on its own command. */
        uow->defer_writes = attempt == 0;
        ap_err_t err = try_batch(c, items, n, last, skus, ask_ids || attempt > 0);
        uow->defer_writes = false;
        if (err == AP_OK) {
            AP_DEBUG("consumer", "batch of %zu committed in %lld ms", n,
                     (long long)(ap_clock_now_ms(c->app->deps.clock) - started));
            ap_health_set_database(c->health, true, AP_FAULT_NONE);
            for (size_t i = 0; i < c->nparts; i++) {
                if (last[i] < 0)
                    continue;
                c->parts[i].next_offset = last[i] + 1;
            }
            for (size_t i = 0; i < n; i++) {
                log_context(&items[i]);
                report(c, &items[i]);
            }
            ap_log_context_clear();
            if (c->ins) {
                ap_metric_observe(c->ins->batch_commands, (double)n);
                ap_metric_observe(c->ins->batch_duration,
                                  (double)(ap_clock_now_ms(c->app->deps.clock) - started) / 1e3);
            }
            break;
        }
        if (err == AP_ERR_FENCED)
            continue; /* that partition is skipped now: the rest goes again at once */
        if (err == AP_ERR_UNAVAILABLE) /* said once, by the health flag, rather than each time */
            ap_health_set_database(c->health, false, ap_pg_thread_fault());
        else if (attempt == 0 && err == AP_ERR_CONFLICT) /* often a repeated message id */
            AP_INFO("consumer", "batch of %zu: %s (a concurrent change, or a message id applied "
                                "before); retrying",
                    n, ap_strerror(err));
        else
            AP_WARN("consumer", "batch of %zu: %s; retrying", n, ap_strerror(err));
        if (attempt == 0 && err == AP_ERR_CONFLICT)
            continue; /* at once, now with each write sent as it comes */
        if (!back_off(c, attempt))
            break; /* not applied, not acknowledged: read again by whoever owns it next */
    }
out:
    free(skus);
    free(last);
}

/*
 * Gathers a batch: waits up to POLL_MS for a first record, then takes what has already been
 * fetched, without waiting for more, up to the batch size or time limit. A lone command is
 * therefore processed at once, and a busy partition in batches. The batch's oldest command
 * timestamp goes to the age histogram (a skew between the producer's clock and ours shifts
 * it; a negative age counts as 0).
 */
static size_t gather(consumer_t *c, item_t *items)
{
    size_t n = 0;
    int64_t deadline = 0, oldest = INT64_MAX;
    ap_clock_t *clock = c->app->deps.clock;

    while (n < (size_t)c->cfg->batch_max_messages && !atomic_load(c->stop)) {
        item_t *item = &items[n];
        if (ap_kafka_consumer_poll(c->kafka, n == 0 ? POLL_MS : 0, &item->rec) != AP_OK)
            break;
        partition_t *p = find_partition(c, item->rec.topic, item->rec.partition, false);
        if (!p) {
            ap_kafka_record_release(&item->rec);
            continue;
        }
        item->part = (size_t)(p - c->parts);
        item->decoded = decode(c, &item->rec, &item->cmd, item->why, sizeof item->why);
        if (item->rec.timestamp_ms >= 0 && item->rec.timestamp_ms < oldest)
            oldest = item->rec.timestamp_ms;
        if (n++ == 0)
            deadline = ap_clock_now_ms(clock) + c->cfg->batch_max_wait_ms;
        else if (ap_clock_now_ms(clock) >= deadline)
            break;
    }
    if (c->ins && oldest != INT64_MAX)
        ap_metric_observe_since(c->ins->command_age, oldest);
    return n;
}

/*
 * Pauses consumption while the relay is far behind, and resumes once it has caught up. Called
 * before every batch. The relay only ever shrinks the backlog, so the rows measured last plus
 * the rows written since bound it from above: while that bound is within the limit the
 * database is not asked, except every BACKPRESSURE_EVERY_MS for the age of the oldest row.
 * Pausing drops what was fetched already, so the next batch cannot add to a backlog that is
 * at or past the limit.
 *
 * A measure is two index probes (ap_outbox_backlog): the span of ids from the oldest row to
 * the last one given bounds the rows waiting, which settles most questions. Only a count can
 * tell that a span over the limit holds more rows than it (the span also has the ids of
 * rolled-back transactions, and of rows delivered behind one the relay holds), or that a span
 * over half the limit holds half or fewer, and a count costs what the backlog is long. So the
 * rows are counted only then, at most every BACKPRESSURE_COUNT_EVERY_MS, except when the bound
 * says this batch could take the backlog past the limit: then every time, as before.
 */
static void check_backpressure(consumer_t *c, int64_t now)
{
    const ap_config_t *cfg = c->cfg;
    bool paused = atomic_load(&c->health->backpressure);
    uint64_t written = ap_outbox_rows_written(c->outbox);
    int64_t max = cfg->backpressure_max_rows;
    int64_t bound = c->backlog_rows + (int64_t)(written - c->backlog_written);
    ap_outbox_backlog_t b;

    if (c->backlog_known && now - c->backlog_measured_ms < BACKPRESSURE_EVERY_MS &&
        (paused || bound <= max))
        return;
    bool may_count = (!paused && bound > max) || !c->backlog_counted ||
                     now - c->backlog_counted_ms >= BACKPRESSURE_COUNT_EVERY_MS;
    int64_t count_above = !may_count ? INT64_MAX : paused ? max / 2 : max;
    if (ap_outbox_backlog(c->outbox, count_above, max + 1, &c->backlog_from_id, &b))
        return; /* Postgres is away: the batch's own retries deal with that */
    int64_t rows = b.rows, age_ms = b.oldest_ms;
    if (b.counted) {
        c->backlog_counted = true;
        c->backlog_counted_ms = now;
    } else if (c->backlog_known && bound < rows) {
        rows = bound; /* both bound the rows waiting: keep the tighter */
    }
    c->backlog_rows = rows;
    c->backlog_written = written;
    c->backlog_measured_ms = now;
    c->backlog_known = true;
    if (c->ins) {
        ap_metric_set(c->ins->outbox_rows, (double)rows);
        ap_metric_set(c->ins->outbox_age, (double)age_ms / 1e3);
    }

    /* Uncounted, rows is an upper bound: it may overstate the backlog, never understate it. */
    bool behind = (rows > max && b.counted) || age_ms > cfg->backpressure_max_age_ms;
    bool caught_up = rows <= max / 2 && age_ms <= cfg->backpressure_max_age_ms / 2;
    if (!paused && behind) {
        AP_WARN("consumer", "outbox backlog of %lld rows, oldest %lld ms: pausing consumption",
                (long long)rows, (long long)age_ms);
        ap_kafka_consumer_pause(c->kafka, true);
        atomic_store(&c->health->backpressure, true);
    } else if (paused && caught_up) {
        AP_INFO("consumer", "outbox backlog down to %lld rows: resuming consumption",
                (long long)rows);
        ap_kafka_consumer_pause(c->kafka, false);
        /* Read on from the offsets Postgres holds, so a resume never depends on the
         * position librdkafka kept while paused (its changelog lists pause/resume fixes
         * after 2.0.2, the version Debian 12 ships). */
        for (size_t i = 0; i < c->nparts; i++) {
            const partition_t *p = &c->parts[i];
            if (p->owned && p->next_offset >= 0)
                ap_kafka_consumer_seek(c->kafka, p->topic, p->partition, p->next_offset);
        }
        atomic_store(&c->health->backpressure, false);
    }
}

/* Lag of each owned partition: its end offset (as fetches last saw it) minus our offset. */
static void update_lag(consumer_t *c)
{
    char number[16];
    for (size_t i = 0; i < c->nparts; i++) {
        const partition_t *p = &c->parts[i];
        int64_t end;
        if (!p->owned || ap_kafka_consumer_end_offset(c->kafka, p->topic, p->partition, &end))
            continue;
        int64_t from = p->next_offset > 0 ? p->next_offset : 0;
        snprintf(number, sizeof number, "%d", (int)p->partition);
        ap_metric_set(c->ins->consumer_lag, (double)(end > from ? end - from : 0), p->topic,
                      number);
    }
}

/* Every topic the processor reads or writes: commands, events, rejections, dead letters. */
static ap_err_t create_topics(const ap_config_t *cfg)
{
    static const ap_msg_type_t events[] = {AP_EVT_BATCH_CREATED, AP_EVT_BATCH_QUANTITY_CHANGED,
                                           AP_EVT_ALLOCATED, AP_EVT_DEALLOCATED,
                                           AP_EVT_OUT_OF_STOCK};
    enum { NOUT = sizeof events / sizeof *events + 2 };
    char out[NOUT][AP_TOPIC_SIZE];
    char *topics[64 + NOUT];
    size_t n = 0;

    for (size_t i = 0; i < cfg->ncommand_topics && n < 64; i++)
        topics[n++] = cfg->command_topics[i];
    for (size_t i = 0; i < sizeof events / sizeof *events; i++)
        ap_topic_event(cfg->topic_prefix, events[i], out[i], sizeof out[i]);
    ap_topic_rejections(cfg->topic_prefix, out[NOUT - 2], sizeof out[0]);
    ap_topic_dead_letter(cfg->topic_prefix, out[NOUT - 1], sizeof out[0]);
    for (size_t i = 0; i < NOUT; i++)
        topics[n++] = out[i];
    return ap_kafka_create_topics(cfg, topics, n, 10000);
}

int ap_consumer_run(const ap_config_t *cfg, ap_app_t *app, ap_outbox_t *outbox,
                    ap_avro_codec_t *codec, ap_health_t *health, const ap_instruments_t *ins,
                    atomic_bool *stop)
{
    consumer_t c = {.cfg = cfg, .app = app, .outbox = outbox, .codec = codec,
                    .health = health, .ins = ins, .stop = stop};
    ap_kafka_rebalance_t rebalance = {on_assigned, on_revoked, &c};
    item_t *items = calloc((size_t)cfg->batch_max_messages, sizeof *items);
    int rc = 1;

    atomic_store(&health->heartbeat_ms, ap_health_now_ms());
    ap_bus_observe(&app->bus, observe_event, &c);
    if (!items || ap_kafka_consumer_new(cfg, &rebalance, &c.kafka))
        goto out;
    /* Topics are created before subscribing so the first assignment sees every partition. */
    for (unsigned attempt = 0; !atomic_load(stop); attempt++) {
        if (create_topics(cfg) == AP_OK)
            break;
        if (!back_off(&c, attempt))
            break;
    }
    if (atomic_load(stop)) { /* asked to stop while Kafka was away or refused us: a clean stop */
        rc = 0;
        goto out;
    }
    if (ap_kafka_consumer_subscribe(c.kafka, cfg->command_topics, cfg->ncommand_topics))
        goto out;
    AP_INFO("consumer", "consuming %s as group %s, up to %d commands per transaction",
            cfg->command_topics[0], cfg->group_id, cfg->batch_max_messages);

    ap_clock_t *clock = app->deps.clock;
    int64_t last_stats = ap_clock_now_ms(clock), last_lag = 0;
    while (!atomic_load(stop)) {
        atomic_store(&health->heartbeat_ms, ap_health_now_ms());
        check_backpressure(&c, ap_clock_now_ms(clock));
        size_t n = gather(&c, items);
        if (n > 0)
            process_batch(&c, items, n);
        for (size_t i = 0; i < n; i++)
            ap_kafka_record_release(&items[i].rec);
        ap_health_set_kafka(health, ap_kafka_consumer_reachable(c.kafka));
        atomic_store(&health->joined, ap_kafka_consumer_joined(c.kafka));

        int64_t now = ap_clock_now_ms(clock);
        if (ins && now - last_lag >= LAG_EVERY_MS) {
            update_lag(&c);
            last_lag = now;
        }
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
    atomic_store(&health->joined, false);
    ap_bus_observe(&app->bus, NULL, NULL);
    free(items);
    free(c.parts);
    return rc;
}
