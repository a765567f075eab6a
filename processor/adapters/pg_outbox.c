/*
 * pg_outbox.c - the outbox's writing side on PostgreSQL: one row per event, rejection or
 * dead letter, through the unit of work's connection and inside its current scope (a
 * batch's deferred rows go as one INSERT over arrays).
 *
 * Values are encoded here (Avro, per the configured framing) so the relay only moves bytes.
 * Keys and values travel as binary parameters; headers as a text[] and a bytea[] literal
 * (values in bytea's hex form) so arbitrary header bytes survive unchanged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/pg_internal.h"
#include "ap/log.h"
#include "ap/outbox.h"
#include "ap/topics.h"
#include "ap/uuid.h"

struct ap_outbox {
    ap_publisher_t pub; /* first: the publisher port */
    ap_uow_t *uow;
    ap_avro_codec_t *codec;
    char *topic_prefix;
    uint64_t rows_written; /* rows handed to the unit of work, committed or not */
};

static const char insert_sql[] =
    "INSERT INTO outbox (topic, key, value, header_names, header_values, event_id) "
    "VALUES ($1, $2, $3, $4::text[], $5::bytea[], $6::uuid)";

/* The same for many rows, in order (ids are the relay's order); $4 and $5 hold each row's
 * header arrays as array literals. */
static const char insert_many_sql[] =
    "INSERT INTO outbox (topic, key, value, header_names, header_values, event_id) "
    "SELECT u.topic, u.key, u.value, u.names::text[], u.vals::bytea[], u.event_id::uuid "
    "  FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::text[], $5::text[], $6::text[])"
    "       WITH ORDINALITY AS u(topic, key, value, names, vals, event_id, ord) "
    " ORDER BY u.ord";

/* The backlog (ap_outbox_backlog): the oldest row from id $2 and the last id given, two index
 * probes whatever the backlog. Only a span over $3 rows is counted, by one range scan from
 * that row, stopping at $1. */
static const char backlog_sql[] =
    "WITH head AS (SELECT id, created_at FROM outbox WHERE id >= $2 ORDER BY id LIMIT 1), "
    "     tail AS (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS id"
    "                FROM outbox_id_seq) "
    "SELECT COALESCE(h.id, t.id + 1), "
    "       CASE WHEN h.id IS NULL THEN 0 ELSE greatest(t.id - h.id + 1, 1) END, "
    "       COALESCE((extract(epoch FROM clock_timestamp() - h.created_at) * 1000)::bigint,"
    "                0), "
    "       CASE WHEN t.id - h.id + 1 > $3 THEN (SELECT count(*) FROM (SELECT FROM outbox"
    "                 WHERE id >= h.id ORDER BY id LIMIT $1) c) END "
    "  FROM tail t LEFT JOIN head h ON true";

/* For test_plans (pg_internal.h); the unit of work prepares them under names of its own. */
const ap_pg_prepared_t ap_pg_outbox_statements[] = {
    {"ap_outbox_insert", insert_sql},
    {"ap_outbox_insert_many", insert_many_sql},
    {"ap_outbox_backlog", backlog_sql},
    {NULL, NULL},
};

/* ---------------------------------------------------------------- the insert */

/*
 * One row. `event_id` is the event's (ap_msg_meta_t.event_id), which the relay sends as the
 * event-id header; rejections and dead letters, which are no domain event, get a fresh one.
 */
static ap_err_t insert_row(ap_outbox_t *outbox, const char *event_id, const char *topic,
                           const void *key, size_t key_len, const void *value,
                           size_t value_len, const ap_header_t *headers, size_t nheaders)
{
    char fresh_id[AP_EVENT_ID_SIZE];
    if (!event_id || !event_id[0]) {
        ap_err_t err = ap_uuid4_random(fresh_id);
        if (err)
            return err;
        event_id = fresh_id;
    }
    char **names = calloc(nheaders + 1, sizeof *names);
    char **values = calloc(nheaders + 1, sizeof *values);
    char *name_array = NULL, *value_array = NULL;
    ap_err_t err = AP_ERR_NOMEM;

    if (!names || !values)
        goto out;
    for (size_t i = 0; i < nheaders; i++) {
        if (!(names[i] = strndup(headers[i].name, headers[i].name_len)))
            goto out;
        if (headers[i].value &&
            !(values[i] = ap_pg_bytea_hex(headers[i].value, headers[i].value_len)))
            goto out;
    }
    if (!(name_array = ap_pg_text_array((const char *const *)names, nheaders)) ||
        !(value_array = ap_pg_text_array((const char *const *)values, nheaders)))
        goto out;

    const char *params[6] = {topic, key, value, name_array, value_array, event_id};
    const int lengths[6] = {0, (int)key_len, (int)value_len, 0, 0, 0};
    const int formats[6] = {0, 1, 1, 0, 0, 0};
    /* With deferred writes, it goes with the next round trip, merged with its neighbours. */
    outbox->rows_written++;
    err = ap_pg_uow_insert(outbox->uow, insert_sql, insert_many_sql, 6, params, lengths,
                           formats);
    if (!err)
        ap_pg_uow_notify_on_commit(outbox->uow, AP_PG_CHANNEL_OUTBOX);
out:
    for (size_t i = 0; names && values && i < nheaders; i++) {
        free(names[i]);
        free(values[i]);
    }
    free(values);
    free(names);
    free(name_array);
    free(value_array);
    return err;
}

/* Appends the provenance headers every event carries (event-id is added by the relay). */
static size_t meta_headers(const ap_msg_meta_t *meta, const char *event_type, ap_header_t *h)
{
    size_t n = 0;
    h[n++] = AP_HEADER("event-type", event_type, strlen(event_type));
    if (meta->correlation_id[0])
        h[n++] = AP_HEADER("correlation-id", meta->correlation_id, strlen(meta->correlation_id));
    if (meta->causation_id[0])
        h[n++] = AP_HEADER("causation-id", meta->causation_id, strlen(meta->causation_id));
    if (meta->traceparent[0])
        h[n++] = AP_HEADER("traceparent", meta->traceparent, strlen(meta->traceparent));
    return n;
}

static ap_err_t outbox_publish(ap_publisher_t *pub, const ap_msg_t *event)
{
    ap_outbox_t *outbox = container_of(pub, ap_outbox_t, pub);
    ap_header_t headers[4];
    char topic[AP_TOPIC_SIZE];
    uint8_t *value = NULL;
    size_t len = 0;

    ap_err_t err = ap_avro_encode_event(outbox->codec, event, &value, &len);
    if (err) {
        AP_ERROR("outbox", "cannot encode %s: %s", ap_msg_type_name(event->type),
                 ap_strerror(err));
        return err;
    }
    ap_topic_event(outbox->topic_prefix, event->type, topic, sizeof topic);
    size_t nheaders = meta_headers(&event->meta, ap_msg_type_name(event->type), headers);
    err = insert_row(outbox, event->meta.event_id, topic, event->sku, strlen(event->sku), value,
                     len, headers, nheaders);
    free(value);
    return err;
}

ap_err_t ap_outbox_reject(ap_outbox_t *outbox, const ap_rejection_t *rejection,
                          const ap_msg_meta_t *meta, const void *key, size_t key_len)
{
    ap_header_t headers[4];
    char topic[AP_TOPIC_SIZE];
    uint8_t *value = NULL;
    size_t len = 0;

    ap_err_t err = ap_avro_encode_rejection(outbox->codec, rejection, &value, &len);
    if (err)
        return err;
    ap_topic_rejections(outbox->topic_prefix, topic, sizeof topic);
    size_t nheaders = meta_headers(meta, "CommandRejected", headers);
    err = insert_row(outbox, NULL, topic, key, key_len, value, len, headers, nheaders);
    free(value);
    return err;
}

ap_err_t ap_outbox_dead_letter(ap_outbox_t *outbox, const ap_dead_letter_t *letter)
{
    size_t nheaders = letter->nheaders;
    char topic[AP_TOPIC_SIZE], partition[16], offset[AP_PG_INT_SIZE];
    ap_header_t *all = malloc((nheaders + 4) * sizeof *all);
    if (!all)
        return AP_ERR_NOMEM;

    ap_topic_dead_letter(outbox->topic_prefix, topic, sizeof topic);
    snprintf(partition, sizeof partition, "%d", (int)letter->source_partition);
    snprintf(offset, sizeof offset, "%lld", (long long)letter->source_offset);
    if (nheaders)
        memcpy(all, letter->headers, nheaders * sizeof *all);
    all[nheaders] = AP_HEADER("dlq-reason", letter->reason, strlen(letter->reason));
    all[nheaders + 1] =
        AP_HEADER("dlq-source-topic", letter->source_topic, strlen(letter->source_topic));
    all[nheaders + 2] = AP_HEADER("dlq-source-partition", partition, strlen(partition));
    all[nheaders + 3] = AP_HEADER("dlq-source-offset", offset, strlen(offset));
    ap_err_t err = insert_row(outbox, NULL, topic, letter->key, letter->key_len, letter->value,
                              letter->value_len, all, nheaders + 4);
    free(all);
    return err;
}

ap_err_t ap_outbox_backlog(ap_outbox_t *outbox, int64_t count_above, int64_t limit,
                           int64_t *from_id, ap_outbox_backlog_t *out)
{
    char text[3][AP_PG_INT_SIZE];
    const char *params[3] = {text[0], text[1], text[2]};
    PGresult *res = NULL;
    int64_t next_from, span;

    snprintf(text[0], sizeof text[0], "%lld", (long long)limit);
    snprintf(text[1], sizeof text[1], "%lld", (long long)*from_id);
    snprintf(text[2], sizeof text[2], "%lld", (long long)count_above);
    ap_err_t err = ap_pg_uow_query(outbox->uow, backlog_sql, 3, params, &res);
    if (err)
        return err;
    out->counted = !PQgetisnull(res, 0, 3);
    if (!ap_pg_get_int64(res, 0, 0, &next_from) || !ap_pg_get_int64(res, 0, 1, &span) ||
        !ap_pg_get_int64(res, 0, 2, &out->oldest_ms) ||
        (out->counted && !ap_pg_get_int64(res, 0, 3, &span))) {
        err = AP_ERR_INTERNAL;
    } else {
        out->rows = span;
        *from_id = next_from;
    }
    PQclear(res);
    return err;
}

uint64_t ap_outbox_rows_written(const ap_outbox_t *outbox)
{
    return outbox->rows_written;
}

static void outbox_free(ap_publisher_t *pub)
{
    ap_outbox_t *outbox = container_of(pub, ap_outbox_t, pub);
    free(outbox->topic_prefix);
    free(outbox);
}

static const struct ap_publisher_ops outbox_publisher_ops = {outbox_publish, outbox_free};

ap_err_t ap_pg_outbox_new(ap_uow_t *uow, ap_avro_codec_t *codec, const char *topic_prefix,
                          ap_outbox_t **out)
{
    ap_outbox_t *outbox = malloc(sizeof *outbox);
    char *prefix = strdup(topic_prefix);
    if (!outbox || !prefix) {
        free(outbox);
        free(prefix);
        return AP_ERR_NOMEM;
    }
    *outbox = (ap_outbox_t){
        .pub.ops = &outbox_publisher_ops, .uow = uow, .codec = codec, .topic_prefix = prefix};
    *out = outbox;
    return AP_OK;
}

ap_publisher_t *ap_outbox_publisher(ap_outbox_t *outbox)
{
    return &outbox->pub;
}
