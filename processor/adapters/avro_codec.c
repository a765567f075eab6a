/*
 * avro_codec.c - the Avro codec (ap/avro.h): our compiled-in schemas, writer schemas resolved
 * against them, binary encoding of events, rejections and commands with avro-c, and the
 * single-object and Confluent framings. Decoding is in avro_decode.c, the fingerprint in
 * avro_canonical.c.
 *
 * It is not a general Avro library: a record is mapped to an ap_msg_t, an ap_rejection_t or
 * a line of JSON field by field, by name, and only the types our schemas use (string, int,
 * long, null and unions of them) are mapped. Writer schemas may use any type; fields we do
 * not know are skipped.
 *
 * Schema evolution: avro-c 1.11.1 resolves a writer against a reader but does not fill the
 * reader's defaults (avro_resolved_writer_new fails when the reader has a field the writer
 * lacks). So each writer is resolved against a copy of our reader without those fields, and
 * their defaults are taken from our .avsc when the record is mapped (avro_decode.c). Defaults
 * of type null, integer and string are understood, which covers our schemas. Aliases are not
 * supported.
 */
#include <avro.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/avro_internal.h"
#include "adapters/avro_schemas.h"
#include "ap/log.h"

/* The codec ------------------------------------------------------------------------------ */

/* Drops a value we made (when `has_value`), then its class (when made): a generic value is
 * freed through its class, so the class goes last. */
static void release_value(avro_value_t *value, bool has_value, avro_value_iface_t *iface)
{
    if (has_value)
        avro_value_decref(value);
    if (iface)
        avro_value_iface_decref(iface);
}

void ap_avro_writer_free(struct writer_schema *w)
{
    if (!w)
        return;
    /* avro-c's order: values and their classes, then the schemas. */
    release_value(&w->resolved, w->has_resolved, w->resolved_iface);
    release_value(&w->dest, w->has_dest, w->reader_iface);
    if (w->reader_schema)
        avro_schema_decref(w->reader_schema);
    if (w->schema)
        avro_schema_decref(w->schema);
    free(w->error);
    free(w);
}

/* Our reader less the fields that `writer_doc` lacks, which must all have defaults. */
static ap_err_t effective_reader(const struct known_schema *e, json_t *writer_doc,
                                 avro_schema_t *out, char *why, size_t whylen)
{
    json_t *writer_fields = json_object_get(writer_doc, "fields");
    json_t *kept = json_array();
    json_t *copy = NULL;
    char *text = NULL;
    bool dropped = false;
    ap_err_t err = AP_ERR_NOMEM;
    size_t i, j;
    json_t *field, *other;

    if (!kept)
        goto out;
    json_array_foreach(e->fields, i, field) {
        const char *name = json_string_value(json_object_get(field, "name"));
        bool found = false;
        json_array_foreach(writer_fields, j, other) {
            const char *other_name = json_string_value(json_object_get(other, "name"));
            if (other_name && strcmp(other_name, name) == 0) {
                found = true;
                break;
            }
        }
        if (found) {
            if (json_array_append(kept, field))
                goto out;
        } else if (json_object_get(field, "default")) {
            dropped = true;
        } else {
            AP_SAY(why, whylen, "the writer's %s lacks field %s, which has no default",
                   e->full_name, name);
            err = AP_ERR_DECODE;
            goto out;
        }
    }
    if (!dropped) {
        *out = avro_schema_incref(e->schema);
        err = AP_OK;
        goto out;
    }
    copy = json_copy(e->doc);
    if (!copy || json_object_set(copy, "fields", kept))
        goto out;
    text = json_dumps(copy, JSON_COMPACT);
    if (!text)
        goto out;
    if (avro_schema_from_json_length(text, strlen(text), out)) {
        AP_SAY(why, whylen, "reader schema %s without defaulted fields: %s",
               e->full_name, avro_strerror());
        err = AP_ERR_INTERNAL;
        goto out;
    }
    err = AP_OK;
out:
    free(text);
    json_decref(copy);
    json_decref(kept);
    return err;
}

/* Resolves w->schema (set by the caller) against `reader`. */
ap_err_t ap_avro_writer_resolve(struct writer_schema *w, const struct known_schema *reader,
                                json_t *writer_doc, char *why, size_t whylen)
{
    ap_err_t err = effective_reader(reader, writer_doc, &w->reader_schema, why, whylen);
    if (err)
        return err;
    w->resolved_iface = avro_resolved_writer_new(w->schema, w->reader_schema);
    if (!w->resolved_iface) {
        AP_SAY(why, whylen, "the writer's %s does not resolve against ours: %s", reader->full_name,
               avro_strerror());
        return AP_ERR_DECODE;
    }
    w->reader_iface = avro_generic_class_from_schema(w->reader_schema);
    if (!w->reader_iface) {
        AP_SAY(why, whylen, "%s: %s", reader->full_name, avro_strerror());
        return AP_ERR_INTERNAL;
    }
    if (avro_resolved_writer_new_value(w->resolved_iface, &w->resolved)) {
        AP_SAY(why, whylen, "%s: %s", reader->full_name, avro_strerror());
        return AP_ERR_NOMEM;
    }
    w->has_resolved = true;
    if (avro_generic_value_new(w->reader_iface, &w->dest)) {
        AP_SAY(why, whylen, "%s: %s", reader->full_name, avro_strerror());
        return AP_ERR_NOMEM;
    }
    w->has_dest = true;
    avro_resolved_writer_set_dest(&w->resolved, &w->dest);
    w->reader = reader;
    return AP_OK;
}

struct known_schema *ap_avro_known_schema(const ap_avro_codec_t *codec, const char *full_name)
{
    for (size_t i = 0; i < codec->count; i++) {
        if (strcmp(codec->entries[i].full_name, full_name) == 0)
            return &codec->entries[i];
    }
    return NULL;
}

static struct known_schema *known_schema_by_type(const ap_avro_codec_t *codec, ap_msg_type_t type,
                                                  bool rejection)
{
    for (size_t i = 0; i < codec->count; i++) {
        struct known_schema *e = &codec->entries[i];
        if (rejection ? e->is_rejection : (type != AP_MSG_NONE && e->type == type))
            return e;
    }
    return NULL;
}

static ap_err_t known_schema_init(struct known_schema *e, const ap_avro_schema_src_t *src)
{
    json_error_t jerr;
    char *canonical = NULL;
    char why[512] = "";
    ap_err_t err = AP_ERR_INTERNAL;

    e->json = src->json;
    e->doc = json_loads(src->json, JSON_REJECT_DUPLICATES, &jerr);
    if (!e->doc) {
        AP_ERROR("avro", "schema %s: line %d: %s", src->path, jerr.line, jerr.text);
        return AP_ERR_INTERNAL;
    }
    e->fields = json_object_get(e->doc, "fields");
    e->full_name = ap_avro_record_name(e->doc);
    if (!e->full_name || !json_is_array(e->fields)) {
        AP_ERROR("avro", "schema %s is not a record", src->path);
        return AP_ERR_INTERNAL;
    }
    size_t i;
    json_t *field;
    json_array_foreach(e->fields, i, field) {
        if (!json_is_string(json_object_get(field, "name"))) {
            AP_ERROR("avro", "schema %s: field %zu has no name", src->path, i);
            return AP_ERR_INTERNAL;
        }
    }
    const char *dot = strrchr(e->full_name, '.');
    e->short_name = dot ? dot + 1 : e->full_name;
    e->is_rejection = strcmp(e->full_name, AP_AVRO_REJECTION_NAME) == 0;
    e->type = e->is_rejection ? AP_MSG_NONE
                              : ap_msg_type_parse(e->short_name, strlen(e->short_name));

    if ((err = ap_avro_canonical_form(src->json, &canonical))) {
        AP_ERROR("avro", "schema %s: no canonical form", src->path);
        return err;
    }
    e->fingerprint = ap_avro_crc64(canonical, strlen(canonical));
    free(canonical);

    if (avro_schema_from_json_length(src->json, strlen(src->json), &e->schema)) {
        AP_ERROR("avro", "schema %s: %s", src->path, avro_strerror());
        return AP_ERR_INTERNAL;
    }
    e->iface = avro_generic_class_from_schema(e->schema);
    if (!e->iface || avro_generic_value_new(e->iface, &e->value)) {
        AP_ERROR("avro", "schema %s: %s", src->path, avro_strerror());
        return AP_ERR_NOMEM;
    }
    e->has_value = true;

    e->self = calloc(1, sizeof *e->self);
    if (!e->self)
        return AP_ERR_NOMEM;
    e->self->schema = avro_schema_incref(e->schema);
    if ((err = ap_avro_writer_resolve(e->self, e, e->doc, why, sizeof why))) {
        AP_ERROR("avro", "schema %s: %s", src->path, why);
        return err;
    }
    return AP_OK;
}

static void known_schema_release(struct known_schema *e)
{
    ap_avro_writer_free(e->self);
    release_value(&e->value, e->has_value, e->iface);
    if (e->schema)
        avro_schema_decref(e->schema);
    free(e->full_name);
    json_decref(e->doc);
}

ap_err_t ap_avro_codec_new(ap_wire_format_t format, ap_avro_codec_t **out)
{
    static const char empty[1];
    ap_err_t err = AP_ERR_NOMEM;
    ap_avro_codec_t *codec = calloc(1, sizeof *codec);

    if (!codec)
        return AP_ERR_NOMEM;
    codec->format = format;
    codec->entries = calloc(ap_avro_schemas_count, sizeof *codec->entries);
    codec->reader = avro_reader_memory(empty, 0);
    codec->writer = avro_writer_memory(empty, 0);
    if (!codec->entries || !codec->reader || !codec->writer)
        goto out;
    for (size_t i = 0; i < ap_avro_schemas_count; i++) {
        codec->count = i + 1;
        if ((err = known_schema_init(&codec->entries[i], &ap_avro_schemas[i])))
            goto out;
    }

    /* Every message type and the rejection have exactly one schema, and fingerprints and
     * names are unique: a mistake in schemas/avro/ fails here, at start-up. */
    err = AP_ERR_INTERNAL;
    for (int t = AP_MSG_NONE + 1; t < AP_MSG__COUNT; t++) {
        if (!known_schema_by_type(codec, (ap_msg_type_t)t, false)) {
            AP_ERROR("avro", "no schema for %s", ap_msg_type_name((ap_msg_type_t)t));
            goto out;
        }
    }
    if (!known_schema_by_type(codec, AP_MSG_NONE, true)) {
        AP_ERROR("avro", "no schema for %s", AP_AVRO_REJECTION_NAME);
        goto out;
    }
    for (size_t i = 0; i < codec->count; i++) {
        for (size_t j = i + 1; j < codec->count; j++) {
            if (strcmp(codec->entries[i].full_name, codec->entries[j].full_name) == 0 ||
                codec->entries[i].fingerprint == codec->entries[j].fingerprint) {
                AP_ERROR("avro", "schemas %s and %s clash", ap_avro_schemas[i].path,
                         ap_avro_schemas[j].path);
                goto out;
            }
        }
    }
    *out = codec;
    codec = NULL;
    err = AP_OK;
out:
    ap_avro_codec_free(codec);
    return err;
}

void ap_avro_codec_forget_writers(ap_avro_codec_t *codec)
{
    for (size_t i = 0; i < codec->cached; i++)
        ap_avro_writer_free(codec->cache[i]);
    codec->cached = 0;
}

void ap_avro_codec_free(ap_avro_codec_t *codec)
{
    if (!codec)
        return;
    ap_avro_codec_forget_writers(codec);
    free(codec->cache);
    for (size_t i = 0; i < codec->count; i++)
        known_schema_release(&codec->entries[i]);
    free(codec->entries);
    if (codec->reader)
        avro_reader_free(codec->reader);
    if (codec->writer)
        avro_writer_free(codec->writer);
    free(codec);
}

void ap_avro_codec_set_lookup(ap_avro_codec_t *codec, ap_schema_lookup_fn lookup, void *ctx)
{
    codec->lookup = lookup;
    codec->lookup_ctx = ctx;
}

bool ap_avro_schema_at(const ap_avro_codec_t *codec, size_t i, const char **full_name,
                       const char **schema_json)
{
    if (i >= codec->count)
        return false;
    *full_name = codec->entries[i].full_name;
    *schema_json = codec->entries[i].json;
    return true;
}

ap_err_t ap_avro_codec_set_schema_id(ap_avro_codec_t *codec, const char *full_name, int32_t id)
{
    struct known_schema *e = ap_avro_known_schema(codec, full_name);
    if (!e)
        return AP_ERR_NOT_FOUND;
    e->has_id = true;
    e->id = id;
    return AP_OK;
}

bool ap_avro_is_framed(const void *value, size_t len)
{
    const uint8_t *bytes = value;
    return len > 0 && (bytes[0] == 0xC3 || bytes[0] == 0x00);
}

/* Encoding ------------------------------------------------------------------------------- */

typedef ap_err_t (*field_get_fn)(const void *ctx, const char *name, struct fieldval *fv);

/* A string field of a fixed-size struct; AP_ERR_INTERNAL when it is not NUL-terminated. */
static ap_err_t str_field(const char *s, size_t size, struct fieldval *fv)
{
    size_t len = strnlen(s, size);
    if (len == size)
        return AP_ERR_INTERNAL;
    fv->kind = FV_STR;
    fv->s = s;
    fv->len = len;
    return AP_OK;
}

/* Where a record's field lives in one of our fixed-size structs. */
typedef struct field_map {
    const char *name;
    enum { FIELD_STR, FIELD_I32, FIELD_I64, FIELD_ETA } kind; /* ETA: has_eta + eta */
    size_t offset, size;
} field_map_t;

#define FIELD(kind, type, member) {#member, kind, offsetof(type, member), sizeof ((type *)0)->member}

static const field_map_t msg_fields[] = {
    FIELD(FIELD_STR, ap_msg_t, ref),     FIELD(FIELD_STR, ap_msg_t, sku),
    FIELD(FIELD_STR, ap_msg_t, orderid), FIELD(FIELD_STR, ap_msg_t, batchref),
    FIELD(FIELD_I64, ap_msg_t, qty),     FIELD(FIELD_ETA, ap_msg_t, eta),
};

static const field_map_t rejection_fields[] = {
    FIELD(FIELD_STR, ap_rejection_t, reason),
    FIELD(FIELD_STR, ap_rejection_t, message),
    FIELD(FIELD_STR, ap_rejection_t, source_topic),
    FIELD(FIELD_I32, ap_rejection_t, source_partition),
    FIELD(FIELD_I64, ap_rejection_t, source_offset),
};

/* Field `name` of the struct at `base`, by its map; AP_ERR_INTERNAL when it has none. */
static ap_err_t mapped_field(const field_map_t *map, size_t n, const void *base,
                             const char *name, struct fieldval *fv)
{
    for (size_t i = 0; i < n; i++) {
        const char *at = (const char *)base + map[i].offset;
        int32_t i32;
        if (strcmp(name, map[i].name) != 0)
            continue;
        switch (map[i].kind) {
        case FIELD_STR:
            return str_field(at, map[i].size, fv);
        case FIELD_I32:
            memcpy(&i32, at, sizeof i32);
            fv->kind = FV_INT;
            fv->i = i32;
            return AP_OK;
        case FIELD_I64:
            fv->kind = FV_INT;
            memcpy(&fv->i, at, sizeof fv->i);
            return AP_OK;
        case FIELD_ETA: {
            const ap_msg_t *msg = base;
            fv->kind = msg->has_eta ? FV_INT : FV_NULL;
            fv->i = msg->eta;
            return AP_OK;
        }
        }
    }
    return AP_ERR_INTERNAL;
}

static ap_err_t msg_get(const void *ctx, const char *name, struct fieldval *fv)
{
    return mapped_field(msg_fields, sizeof msg_fields / sizeof msg_fields[0], ctx, name, fv);
}

static ap_err_t rejection_get(const void *ctx, const char *name, struct fieldval *fv)
{
    const ap_rejection_t *rejection = ctx;

    if (strcmp(name, "command_type") == 0) {
        /* "?" when the type is not known (ap_msg_type_name's spelling). */
        const char *type = ap_msg_type_name(rejection->command_type);
        return str_field(type, strlen(type) + 1, fv);
    }
    return mapped_field(rejection_fields, sizeof rejection_fields / sizeof rejection_fields[0],
                        ctx, name, fv);
}

static ap_err_t set_value(avro_value_t *value, const struct fieldval *fv)
{
    switch (avro_value_get_type(value)) {
    case AVRO_STRING:
        if (fv->kind != FV_STR)
            return AP_ERR_INTERNAL;
        /* The size counts the NUL (FACTS.md). */
        return avro_value_set_string_len(value, fv->s, fv->len + 1) ? AP_ERR_NOMEM : AP_OK;
    case AVRO_INT32:
        if (fv->kind != FV_INT || fv->i < INT32_MIN || fv->i > INT32_MAX)
            return AP_ERR_INTERNAL;
        return avro_value_set_int(value, (int32_t)fv->i) ? AP_ERR_INTERNAL : AP_OK;
    case AVRO_INT64:
        if (fv->kind != FV_INT)
            return AP_ERR_INTERNAL;
        return avro_value_set_long(value, fv->i) ? AP_ERR_INTERNAL : AP_OK;
    case AVRO_NULL:
        if (fv->kind != FV_NULL)
            return AP_ERR_INTERNAL;
        return avro_value_set_null(value) ? AP_ERR_INTERNAL : AP_OK;
    case AVRO_UNION: {
        /* The null branch for null, else the first other branch. */
        avro_schema_t schema = avro_value_get_schema(value);
        for (size_t b = 0; b < avro_schema_union_size(schema); b++) {
            bool is_null = avro_typeof(avro_schema_union_branch(schema, (int)b)) == AVRO_NULL;
            if (is_null == (fv->kind == FV_NULL)) {
                avro_value_t branch;
                if (avro_value_set_branch(value, (int)b, &branch))
                    return AP_ERR_INTERNAL;
                return set_value(&branch, fv);
            }
        }
        return AP_ERR_INTERNAL;
    }
    default:
        return AP_ERR_INTERNAL;
    }
}

static ap_err_t encode(ap_avro_codec_t *codec, struct known_schema *e, field_get_fn get,
                       const void *ctx, uint8_t **out, size_t *len)
{
    size_t i, size, header;
    json_t *field;
    uint8_t *buf;

    if (codec->format == AP_WIRE_CONFLUENT && !e->has_id) {
        AP_ERROR("avro", "no schema registry id for %s", e->full_name);
        return AP_ERR_CONFIG;
    }
    avro_value_reset(&e->value);
    json_array_foreach(e->fields, i, field) {
        const char *name = json_string_value(json_object_get(field, "name"));
        avro_value_t child;
        struct fieldval fv = {0};
        if (avro_value_get_by_name(&e->value, name, &child, NULL) || get(ctx, name, &fv) ||
            set_value(&child, &fv)) {
            AP_ERROR("avro", "cannot encode %s field %s", e->full_name, name);
            return AP_ERR_INTERNAL;
        }
    }
    if (avro_value_sizeof(&e->value, &size)) {
        AP_ERROR("avro", "%s: %s", e->full_name, avro_strerror());
        return AP_ERR_INTERNAL;
    }

    header = codec->format == AP_WIRE_CONFLUENT ? CONFLUENT_HEADER : SINGLE_OBJECT_HEADER;
    buf = malloc(header + size);
    if (!buf)
        return AP_ERR_NOMEM;
    if (codec->format == AP_WIRE_CONFLUENT) {
        uint32_t id = (uint32_t)e->id;
        buf[0] = 0x00;
        for (int k = 0; k < 4; k++)
            buf[1 + k] = (uint8_t)(id >> (24 - 8 * k));
    } else {
        buf[0] = 0xC3;
        buf[1] = 0x01;
        for (int k = 0; k < 8; k++)
            buf[2 + k] = (uint8_t)(e->fingerprint >> (8 * k));
    }
    avro_writer_memory_set_dest(codec->writer, (const char *)buf + header, (int64_t)size);
    if (avro_value_write(codec->writer, &e->value)) {
        AP_ERROR("avro", "%s: %s", e->full_name, avro_strerror());
        free(buf);
        return AP_ERR_INTERNAL;
    }
    *out = buf;
    *len = header + size;
    return AP_OK;
}

/* An event or a command; `of_its_kind` says whether msg->type is what the caller encodes. */
static ap_err_t encode_msg(ap_avro_codec_t *codec, const ap_msg_t *msg, bool of_its_kind,
                           uint8_t **out, size_t *len)
{
    struct known_schema *e = of_its_kind ? known_schema_by_type(codec, msg->type, false) : NULL;
    if (!e)
        return AP_ERR_INTERNAL;
    return encode(codec, e, msg_get, msg, out, len);
}

ap_err_t ap_avro_encode_event(ap_avro_codec_t *codec, const ap_msg_t *event, uint8_t **out,
                              size_t *len)
{
    return encode_msg(codec, event, ap_msg_is_event(event->type), out, len);
}

ap_err_t ap_avro_encode_command(ap_avro_codec_t *codec, const ap_msg_t *cmd, uint8_t **out,
                                size_t *len)
{
    return encode_msg(codec, cmd, ap_msg_is_command(cmd->type), out, len);
}

ap_err_t ap_avro_encode_rejection(ap_avro_codec_t *codec, const ap_rejection_t *rejection,
                                  uint8_t **out, size_t *len)
{
    struct known_schema *e = known_schema_by_type(codec, AP_MSG_NONE, true);
    if (!e)
        return AP_ERR_INTERNAL;
    return encode(codec, e, rejection_get, rejection, out, len);
}

