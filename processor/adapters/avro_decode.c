/*
 * avro_decode.c - decoding with the Avro codec (ap/avro.h): finding a framed value's writer
 * schema (by fingerprint, or by registry id through the lookup, cached), checking its body
 * (avro_check.c), reading it resolved against our reader, and mapping the record to a
 * command or to a line of JSON, with our defaults for fields the writer lacks.
 *
 * Untrusted input ends here: every length, string and date is checked before it reaches an
 * ap_msg_t. It encodes nothing (avro_codec.c does).
 */
#include <avro.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/avro_internal.h"
#include "ap/array.h"
#include "ap/log.h"

/* Builds (and the caller caches) the writer for registry id `id` from its JSON; on a schema
 * we cannot use, the writer says why in `error`. NULL only when out of memory. */
static struct writer_schema *writer_from_json(ap_avro_codec_t *codec, int32_t id, const char *json)
{
    char text[512] = "";
    char *why = text; /* for SAY */
    size_t whylen = sizeof text;
    json_error_t jerr;
    char *name = NULL;
    struct known_schema *e;
    struct writer_schema *w = calloc(1, sizeof *w);

    if (!w)
        return NULL;
    w->id = id;
    json_t *doc = json_loads(json, JSON_DECODE_ANY, &jerr);
    if (!doc) {
        AP_SAY(why, whylen, "writer schema id %d is not JSON: %s", (int)id, jerr.text);
        goto out;
    }
    if (!(name = ap_avro_record_name(doc))) {
        AP_SAY(why, whylen, "writer schema id %d is not a record", (int)id);
        goto out;
    }
    if (!(e = ap_avro_known_schema(codec, name))) {
        AP_SAY(why, whylen, "writer schema id %d is %s, which we do not know", (int)id, name);
        goto out;
    }
    if (avro_schema_from_json_length(json, strlen(json), &w->schema)) {
        AP_SAY(why, whylen, "writer schema id %d: %s", (int)id, avro_strerror());
        w->schema = NULL;
        goto out;
    }
    ap_avro_writer_resolve(w, e, doc, why, whylen);
out:
    if (!w->reader && !(w->error = strdup(why[0] ? why : "unusable writer schema"))) {
        ap_avro_writer_free(w);
        w = NULL;
    }
    free(name);
    json_decref(doc);
    return w;
}

static ap_err_t writer_by_id(ap_avro_codec_t *codec, int32_t id, struct writer_schema **out,
                             char *why, size_t whylen)
{
    char *json = NULL;

    for (size_t i = 0; i < codec->count; i++) {
        if (codec->entries[i].has_id && codec->entries[i].id == id) {
            *out = codec->entries[i].self;
            return AP_OK;
        }
    }
    for (size_t i = 0; i < codec->cached; i++) {
        if (codec->cache[i]->id == id) {
            *out = codec->cache[i];
            return AP_OK;
        }
    }
    if (!codec->lookup) {
        AP_SAY(why, whylen, "unknown writer schema id %d", (int)id);
        return AP_ERR_DECODE;
    }
    ap_err_t err = codec->lookup(codec->lookup_ctx, id, &json);
    if (err == AP_ERR_NOT_FOUND) {
        AP_SAY(why, whylen, "unknown writer schema id %d", (int)id);
        return AP_ERR_DECODE;
    }
    if (err) {
        /* The registry is unreachable, say: not the message's fault, so no DECODE. */
        AP_SAY(why, whylen, "looking up writer schema id %d: %s", (int)id, ap_strerror(err));
        return err;
    }
    if (!AP_ARRAY_RESERVE(codec->cache, codec->cache_cap, codec->cached + 1)) {
        free(json);
        return AP_ERR_NOMEM;
    }
    struct writer_schema *w = writer_from_json(codec, id, json ? json : "");
    free(json);
    if (!w)
        return AP_ERR_NOMEM;
    codec->cache[codec->cached++] = w;
    *out = w;
    return AP_OK;
}

/* Finds the writer named by the framing; *header receives the framing's length. */
static ap_err_t framed_writer(ap_avro_codec_t *codec, const uint8_t *bytes, size_t len,
                              struct writer_schema **out, size_t *header, char *why, size_t whylen)
{
    if (len == 0) {
        AP_SAY(why, whylen, "empty value");
        return AP_ERR_DECODE;
    }
    if (bytes[0] == 0xC3) {
        uint64_t fp = 0;
        if (len < SINGLE_OBJECT_HEADER || bytes[1] != 0x01) {
            AP_SAY(why, whylen, len < SINGLE_OBJECT_HEADER ? "truncated single-object header"
                                                              : "bad single-object marker");
            return AP_ERR_DECODE;
        }
        for (int k = 0; k < 8; k++)
            fp |= (uint64_t)bytes[2 + k] << (8 * k);
        for (size_t i = 0; i < codec->count; i++) {
            if (codec->entries[i].fingerprint == fp) {
                *out = codec->entries[i].self;
                *header = SINGLE_OBJECT_HEADER;
                return AP_OK;
            }
        }
        AP_SAY(why, whylen, "unknown writer schema fingerprint %016llx", (unsigned long long)fp);
        return AP_ERR_DECODE;
    }
    if (bytes[0] == 0x00) {
        if (len < CONFLUENT_HEADER) {
            AP_SAY(why, whylen, "truncated confluent header");
            return AP_ERR_DECODE;
        }
        uint32_t id = (uint32_t)bytes[1] << 24 | (uint32_t)bytes[2] << 16 |
                      (uint32_t)bytes[3] << 8 | (uint32_t)bytes[4];
        ap_err_t err = writer_by_id(codec, (int32_t)id, out, why, whylen);
        if (!err)
            *header = CONFLUENT_HEADER;
        return err;
    }
    AP_SAY(why, whylen, "not Avro (first byte 0x%02x)", bytes[0]);
    return AP_ERR_DECODE;
}

/* Checks the body, then reads it into w->dest. */
static ap_err_t read_body(ap_avro_codec_t *codec, struct writer_schema *w, const uint8_t *body,
                          size_t len, char *why, size_t whylen)
{
    const char *problem;
    size_t end;

    if (!ap_avro_check_body(w->schema, body, len, &problem, &end)) {
        AP_SAY(why, whylen, "%s: %s at byte %zu", w->reader->full_name, problem, end);
        return AP_ERR_DECODE;
    }
    if (end != len) {
        AP_SAY(why, whylen, "%s: %zu trailing bytes after the record",
               w->reader->full_name, len - end);
        return AP_ERR_DECODE;
    }
    avro_value_reset(&w->dest);
    avro_reader_memory_set_source(codec->reader, (const char *)body, (int64_t)len);
    if (avro_value_read(codec->reader, &w->resolved)) {
        AP_SAY(why, whylen, "%s: %s", w->reader->full_name, avro_strerror());
        return AP_ERR_DECODE;
    }
    return AP_OK;
}

/* Frames, finds and checks: on success w->dest holds the record. */
static ap_err_t decode_record(ap_avro_codec_t *codec, const void *value, size_t len,
                              struct writer_schema **out, bool commands_only, char *why,
                              size_t whylen)
{
    struct writer_schema *w = NULL;
    size_t header = 0;
    ap_err_t err = framed_writer(codec, value, len, &w, &header, why, whylen);

    if (err)
        return err;
    if (!w->reader) {
        AP_SAY(why, whylen, "%s", w->error);
        return AP_ERR_DECODE;
    }
    if (commands_only && !ap_msg_is_command(w->reader->type)) {
        AP_SAY(why, whylen, "%s is not a command", w->reader->full_name);
        return AP_ERR_DECODE;
    }
    if ((err = read_body(codec, w, (const uint8_t *)value + header, len - header, why, whylen)))
        return err;
    *out = w;
    return AP_OK;
}

static ap_err_t value_to_fv(avro_value_t *value, struct fieldval *fv)
{
    int32_t i32;
    avro_value_t branch;

    switch (avro_value_get_type(value)) {
    case AVRO_NULL:
        fv->kind = FV_NULL;
        return AP_OK;
    case AVRO_STRING:
        fv->kind = FV_STR;
        if (avro_value_get_string(value, &fv->s, &fv->len))
            return AP_ERR_INTERNAL;
        fv->len = fv->len ? fv->len - 1 : 0; /* the size counts the NUL */
        return AP_OK;
    case AVRO_INT32:
        fv->kind = FV_INT;
        if (avro_value_get_int(value, &i32))
            return AP_ERR_INTERNAL;
        fv->i = i32;
        return AP_OK;
    case AVRO_INT64:
        fv->kind = FV_INT;
        return avro_value_get_long(value, &fv->i) ? AP_ERR_INTERNAL : AP_OK;
    case AVRO_UNION:
        if (avro_value_get_current_branch(value, &branch))
            return AP_ERR_INTERNAL;
        return value_to_fv(&branch, fv);
    default:
        return AP_ERR_INTERNAL;
    }
}

/* A field of the record just read, or its default when the writer did not have it. */
static ap_err_t field_value(struct writer_schema *w, json_t *field, struct fieldval *fv)
{
    const char *name = json_string_value(json_object_get(field, "name"));
    avro_value_t child;

    if (avro_schema_record_field_get_index(w->reader_schema, name) >= 0) {
        if (avro_value_get_by_name(&w->dest, name, &child, NULL))
            return AP_ERR_INTERNAL;
        return value_to_fv(&child, fv);
    }
    json_t *dflt = json_object_get(field, "default");
    if (json_is_null(dflt)) {
        fv->kind = FV_NULL;
    } else if (json_is_integer(dflt)) {
        fv->kind = FV_INT;
        fv->i = json_integer_value(dflt);
    } else if (json_is_string(dflt)) {
        fv->kind = FV_STR;
        fv->s = json_string_value(dflt);
        fv->len = json_string_length(dflt);
    } else {
        return AP_ERR_INTERNAL;
    }
    return AP_OK;
}

/* Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF), as Avro strings
 * must be: invalid text would otherwise travel on to Postgres and to our events. */
static bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        uint32_t c = p[i], min;
        size_t n;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            n = 1;
            min = 0x80;
            c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            min = 0x800;
            c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            min = 0x10000;
            c &= 0x07;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            c = (c << 6) | (p[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

static ap_err_t msg_set(ap_msg_t *msg, const char *name, const struct fieldval *fv, char *why,
                        size_t whylen)
{
    char *dst = strcmp(name, "ref") == 0       ? msg->ref
                : strcmp(name, "sku") == 0     ? msg->sku
                : strcmp(name, "orderid") == 0 ? msg->orderid
                : strcmp(name, "batchref") == 0 ? msg->batchref
                                                 : NULL;
    if (dst) {
        if (fv->kind != FV_STR)
            return AP_ERR_INTERNAL;
        if (!ap_str_set(dst, fv->s, fv->len)) {
            AP_SAY(why, whylen, "field %s must be at most %d bytes with no NUL", name, AP_STR_MAX);
            return AP_ERR_INVALID_COMMAND;
        }
        if (!utf8_valid(fv->s, fv->len)) {
            AP_SAY(why, whylen, "field %s is not valid UTF-8", name);
            return AP_ERR_INVALID_COMMAND;
        }
        return AP_OK;
    }
    if (strcmp(name, "qty") == 0) {
        if (fv->kind != FV_INT)
            return AP_ERR_INTERNAL;
        msg->qty = fv->i;
    } else if (strcmp(name, "eta") == 0) {
        msg->has_eta = fv->kind == FV_INT;
        if (msg->has_eta && (fv->i < DATE_MIN || fv->i > DATE_MAX)) {
            AP_SAY(why, whylen, "field eta must be a date in the years 0001-9999");
            return AP_ERR_INVALID_COMMAND;
        }
        msg->eta = msg->has_eta ? (int32_t)fv->i : 0;
    }
    return AP_OK;
}

ap_err_t ap_avro_decode_command(ap_avro_codec_t *codec, const void *value, size_t len,
                                ap_msg_t *cmd, char *why, size_t whylen)
{
    struct writer_schema *w = NULL;
    size_t i;
    json_t *field;

    memset(cmd, 0, sizeof *cmd);
    ap_err_t err = decode_record(codec, value, len, &w, true, why, whylen);
    if (err)
        return err;
    cmd->type = w->reader->type;
    json_array_foreach(w->reader->fields, i, field) {
        struct fieldval fv = {0};
        const char *name = json_string_value(json_object_get(field, "name"));
        if ((err = field_value(w, field, &fv))) {
            AP_SAY(why, whylen, "%s: cannot map field %s", w->reader->full_name, name);
            break;
        }
        if ((err = msg_set(cmd, name, &fv, why, whylen)))
            break;
    }
    if (err) {
        /* Like the JSON decoder: the type stays known, for the rejection. */
        ap_msg_type_t type = cmd->type;
        memset(cmd, 0, sizeof *cmd);
        cmd->type = type;
    }
    return err;
}

/* True when `type` (a field's schema) is, or has a branch that is, a date. */
static bool is_date(json_t *type)
{
    size_t i;
    json_t *branch;

    if (json_is_object(type)) {
        json_t *logical = json_object_get(type, "logicalType");
        return json_is_string(logical) && strcmp(json_string_value(logical), "date") == 0;
    }
    json_array_foreach(type, i, branch) {
        if (is_date(branch))
            return true;
    }
    return false;
}

ap_err_t ap_avro_decode_to_json(ap_avro_codec_t *codec, const void *value, size_t len,
                                char **json, char *why, size_t whylen)
{
    struct writer_schema *w = NULL;
    size_t i;
    json_t *field;
    char *text = NULL;

    ap_err_t err = decode_record(codec, value, len, &w, false, why, whylen);
    if (err)
        return err;
    json_t *obj = json_object();
    if (!obj || json_object_set_new(obj, "type", json_string(w->reader->short_name)))
        goto nomem;
    json_array_foreach(w->reader->fields, i, field) {
        struct fieldval fv = {0};
        const char *name = json_string_value(json_object_get(field, "name"));
        json_t *member;
        char date[AP_DATE_LEN + 1];
        if ((err = field_value(w, field, &fv))) {
            AP_SAY(why, whylen, "%s: cannot map field %s", w->reader->full_name, name);
            goto out;
        }
        if (fv.kind == FV_NULL) {
            member = json_null();
        } else if (fv.kind == FV_STR) {
            member = json_stringn(fv.s, fv.len);
            if (!member) {
                AP_SAY(why, whylen, "%s: field %s is not UTF-8", w->reader->full_name, name);
                err = AP_ERR_DECODE;
                goto out;
            }
        } else if (is_date(json_object_get(field, "type")) && fv.i >= DATE_MIN &&
                   fv.i <= DATE_MAX) {
            ap_date_format((int32_t)fv.i, date);
            member = json_string(date);
        } else {
            member = json_integer(fv.i);
        }
        if (!member || json_object_set_new(obj, name, member))
            goto nomem;
    }
    if (!(text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER)))
        goto nomem;
    *json = text;
    err = AP_OK;
    goto out;
nomem:
    err = AP_ERR_NOMEM;
out:
    json_decref(obj);
    return err;
}
