/*
 * avro_codec.c - the Avro adapter (ap/avro.h): our compiled-in schemas, their Parsing
 * Canonical Form and CRC-64-AVRO fingerprint, binary encoding of events with avro-c, the
 * single-object and Confluent framings, and decoding of commands with schema resolution.
 *
 * It is not a general Avro library: a record is mapped to an ap_msg_t, an ap_rejection_t or
 * a line of JSON field by field, by name, and only the types our schemas use (string, int,
 * long, null and unions of them) are mapped. Writer schemas may use any type; fields we do
 * not know are skipped.
 *
 * Untrusted bodies: avro-c believes the lengths and counts it reads, so before it sees a body,
 * check_value() walks it against the writer schema with strict bounds (lengths, union
 * branches, enum symbols, block counts, nesting depth, trailing bytes). avro-c then only ever
 * reads a body known to be well formed, which also avoids its leak on truncated input.
 *
 * Schema evolution: avro-c 1.11.1 resolves a writer against a reader but does not fill the
 * reader's defaults (avro_resolved_writer_new fails when the reader has a field the writer
 * lacks). So each writer is resolved against a copy of our reader without those fields, and
 * their defaults are taken from our .avsc when the record is mapped. Defaults of type null,
 * integer and string are understood, which covers our schemas. Aliases are not supported.
 */
#include <avro.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/avro_schemas.h"
#include "ap/avro.h"
#include "ap/log.h"

#define SAY(...) ((why) && (whylen) ? (void)snprintf(why, whylen, __VA_ARGS__) : (void)0)

#define CRC64_EMPTY UINT64_C(0xc15d213aa4d7a795)
#define SINGLE_OBJECT_HEADER 10 /* C3 01 + 8-byte fingerprint */
#define CONFLUENT_HEADER 5      /* 00 + 4-byte id */
#define MAX_DEPTH 32            /* nesting of values inside one body */

/* Days since 1970-01-01 of 0001-01-01 and 9999-12-31: the dates "YYYY-MM-DD" can spell. */
#define DATE_MIN (-719162)
#define DATE_MAX 2932896

/* CRC-64-AVRO --------------------------------------------------------------------------- */

uint64_t ap_avro_crc64(const void *data, size_t len)
{
    const uint8_t *bytes = data;
    uint64_t fp = CRC64_EMPTY;

    /* Bit by bit rather than the specification's 256-entry table: the same polynomial, no
     * table to initialise, and only schemas are ever fingerprinted. */
    for (size_t i = 0; i < len; i++) {
        fp ^= bytes[i];
        for (int bit = 0; bit < 8; bit++)
            fp = (fp >> 1) ^ (CRC64_EMPTY & (0 - (fp & 1)));
    }
    return fp;
}

/* Parsing Canonical Form ---------------------------------------------------------------- */

struct sbuf {
    char *data;
    size_t len, cap;
    bool nomem;
};

static void sb_put(struct sbuf *sb, const char *s, size_t n)
{
    if (sb->nomem)
        return;
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 256;
        while (sb->len + n + 1 > cap)
            cap *= 2;
        char *data = realloc(sb->data, cap);
        if (!data) {
            sb->nomem = true;
            return;
        }
        sb->data = data;
        sb->cap = cap;
    }
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

static void sb_cstr(struct sbuf *sb, const char *s)
{
    sb_put(sb, s, strlen(s));
}

/* A JSON string literal. Escapes are replaced by the characters themselves (STRINGS); only
 * what JSON requires is escaped again. */
static void sb_quoted(struct sbuf *sb, const char *s)
{
    sb_put(sb, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_put(sb, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_put(sb, esc, 6);
        } else {
            sb_put(sb, s, 1);
        }
    }
    sb_put(sb, "\"", 1);
}

static bool is_primitive(const char *name)
{
    static const char *const primitives[] = {"null",  "boolean", "int",   "long",
                                             "float", "double",  "bytes", "string"};
    for (size_t i = 0; i < sizeof primitives / sizeof primitives[0]; i++) {
        if (strcmp(name, primitives[i]) == 0)
            return true;
    }
    return false;
}

/* The full name of `name` in namespace `space` (FULLNAMES). Caller frees. */
static char *full_name_of(const char *name, const char *space)
{
    if (strchr(name, '.') || !space || !*space)
        return strdup(name);
    size_t n = strlen(space) + 1 + strlen(name) + 1;
    char *full = malloc(n);
    if (full)
        snprintf(full, n, "%s.%s", space, name);
    return full;
}

/* The name of a named type's definition: "name" qualified by "namespace" or the enclosing
 * one. NULL when the definition has no name (or on ENOMEM). */
static char *definition_name(json_t *node, const char *space)
{
    json_t *name = json_object_get(node, "name");
    json_t *own = json_object_get(node, "namespace");
    if (!json_is_string(name))
        return NULL;
    return full_name_of(json_string_value(name), json_is_string(own) ? json_string_value(own)
                                                                      : space);
}

static bool canon(json_t *node, const char *space, struct sbuf *sb);

static bool canon_named(json_t *node, const char *type, const char *space, struct sbuf *sb)
{
    bool ok = false;
    char *full = definition_name(node, space);
    if (!full)
        return false;

    sb_cstr(sb, "{\"name\":");
    sb_quoted(sb, full);
    if (strcmp(type, "record") == 0 || strcmp(type, "error") == 0) {
        json_t *fields = json_object_get(node, "fields");
        size_t i;
        json_t *field;
        /* Nested definitions inherit the namespace of the record's full name. */
        char *dot = strrchr(full, '.');
        const char *inner = "";
        if (dot) {
            *dot = '\0';
            inner = full;
        }
        if (!json_is_array(fields))
            goto out;
        sb_cstr(sb, ",\"type\":\"record\",\"fields\":[");
        json_array_foreach(fields, i, field) {
            json_t *name = json_object_get(field, "name");
            if (!json_is_string(name) || !json_object_get(field, "type"))
                goto out;
            sb_cstr(sb, i ? ",{\"name\":" : "{\"name\":");
            sb_quoted(sb, json_string_value(name));
            sb_cstr(sb, ",\"type\":");
            if (!canon(json_object_get(field, "type"), inner, sb))
                goto out;
            sb_cstr(sb, "}");
        }
        sb_cstr(sb, "]}");
    } else if (strcmp(type, "enum") == 0) {
        json_t *symbols = json_object_get(node, "symbols");
        size_t i;
        json_t *symbol;
        if (!json_is_array(symbols))
            goto out;
        sb_cstr(sb, ",\"type\":\"enum\",\"symbols\":[");
        json_array_foreach(symbols, i, symbol) {
            if (!json_is_string(symbol))
                goto out;
            if (i)
                sb_cstr(sb, ",");
            sb_quoted(sb, json_string_value(symbol));
        }
        sb_cstr(sb, "]}");
    } else { /* fixed */
        json_t *size = json_object_get(node, "size");
        char digits[32];
        if (!json_is_integer(size))
            goto out;
        /* INTEGERS: printed anew, so no leading zeros. */
        snprintf(digits, sizeof digits, "%" JSON_INTEGER_FORMAT, json_integer_value(size));
        sb_cstr(sb, ",\"type\":\"fixed\",\"size\":");
        sb_cstr(sb, digits);
        sb_cstr(sb, "}");
    }
    ok = true;
out:
    free(full);
    return ok;
}

/*
 * Writes the canonical form of `node`, whose enclosing namespace is `space`. Keeps only
 * name, type, fields, symbols, items, values and size, in that order (STRIP, ORDER), with
 * no whitespace (WHITESPACE); {"type":"int",...} becomes "int" (PRIMITIVES).
 */
static bool canon(json_t *node, const char *space, struct sbuf *sb)
{
    if (json_is_string(node)) {
        const char *name = json_string_value(node);
        if (is_primitive(name)) {
            sb_quoted(sb, name);
            return true;
        }
        char *full = full_name_of(name, space);
        if (!full) {
            sb->nomem = true;
            return false;
        }
        sb_quoted(sb, full);
        free(full);
        return true;
    }
    if (json_is_array(node)) {
        size_t i;
        json_t *branch;
        sb_cstr(sb, "[");
        json_array_foreach(node, i, branch) {
            if (i)
                sb_cstr(sb, ",");
            if (!canon(branch, space, sb))
                return false;
        }
        sb_cstr(sb, "]");
        return true;
    }
    if (!json_is_object(node))
        return false;

    json_t *type = json_object_get(node, "type");
    if (!json_is_string(type))
        return false;
    const char *t = json_string_value(type);
    if (strcmp(t, "record") == 0 || strcmp(t, "error") == 0 || strcmp(t, "enum") == 0 ||
        strcmp(t, "fixed") == 0)
        return canon_named(node, t, space, sb);
    if (strcmp(t, "array") == 0 || strcmp(t, "map") == 0) {
        const char *key = t[0] == 'a' ? "items" : "values";
        json_t *inner = json_object_get(node, key);
        if (!inner)
            return false;
        sb_cstr(sb, t[0] == 'a' ? "{\"type\":\"array\",\"items\":"
                                : "{\"type\":\"map\",\"values\":");
        if (!canon(inner, space, sb))
            return false;
        sb_cstr(sb, "}");
        return true;
    }
    /* A primitive, or a reference to a named type, in the object form. */
    return canon(type, space, sb);
}

ap_err_t ap_avro_canonical_form(const char *schema_json, char **canonical)
{
    json_error_t jerr;
    struct sbuf sb = {0};
    ap_err_t err = AP_ERR_DECODE;

    json_t *root = json_loads(schema_json, JSON_DECODE_ANY, &jerr);
    if (!root)
        return AP_ERR_DECODE;
    if (!canon(root, "", &sb) || sb.nomem || !sb.data) {
        err = sb.nomem ? AP_ERR_NOMEM : AP_ERR_DECODE;
        free(sb.data);
        goto out;
    }
    *canonical = sb.data;
    err = AP_OK;
out:
    json_decref(root);
    return err;
}

/* The codec ------------------------------------------------------------------------------ */

struct entry;

/* A writer schema resolved against our reader of the same name, ready to read bodies. */
struct writer {
    int32_t id;                  /* the registry's id (cached writers only) */
    const struct entry *reader;  /* NULL when unusable; `error` says why */
    char *error;
    avro_schema_t schema;        /* the writer's */
    avro_schema_t reader_schema; /* ours, less the fields the writer lacks (they have defaults) */
    avro_value_iface_t *resolved_iface;
    avro_value_iface_t *reader_iface;
    avro_value_t resolved; /* reads the writer's encoding into `dest` */
    avro_value_t dest;     /* an instance of reader_schema */
    bool has_resolved, has_dest;
};

/* One compiled-in schema. */
struct entry {
    const char *json; /* the .avsc text (static) */
    json_t *doc;
    json_t *fields;   /* doc's "fields", borrowed */
    char *full_name;  /* "com.made.allocation.events.Allocated" */
    const char *short_name;
    ap_msg_type_t type; /* AP_MSG_NONE for CommandRejected and records we only print */
    bool is_rejection;
    uint64_t fingerprint;
    bool has_id;
    int32_t id;
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value; /* reused for encoding */
    bool has_value;
    struct writer *self; /* this schema as its own writer (the single-object path) */
};

struct ap_avro_codec {
    ap_wire_format_t format;
    struct entry *entries;
    size_t count;
    struct writer **cache; /* writers fetched by registry id, including failures */
    size_t cached, cache_cap;
    ap_schema_lookup_fn lookup;
    void *lookup_ctx;
    avro_reader_t reader;
    avro_writer_t writer;
};

static void writer_free(struct writer *w)
{
    if (!w)
        return;
    /* avro-c's order: values, then their classes, then the schemas. */
    if (w->has_resolved)
        avro_value_decref(&w->resolved);
    if (w->has_dest)
        avro_value_decref(&w->dest);
    if (w->resolved_iface)
        avro_value_iface_decref(w->resolved_iface);
    if (w->reader_iface)
        avro_value_iface_decref(w->reader_iface);
    if (w->reader_schema)
        avro_schema_decref(w->reader_schema);
    if (w->schema)
        avro_schema_decref(w->schema);
    free(w->error);
    free(w);
}

/* Our reader less the fields that `writer_doc` lacks, which must all have defaults. */
static ap_err_t effective_reader(const struct entry *e, json_t *writer_doc, avro_schema_t *out,
                                 char *why, size_t whylen)
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
            SAY("the writer's %s lacks field %s, which has no default", e->full_name, name);
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
        SAY("reader schema %s without defaulted fields: %s", e->full_name, avro_strerror());
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
static ap_err_t writer_resolve(struct writer *w, const struct entry *reader, json_t *writer_doc,
                               char *why, size_t whylen)
{
    ap_err_t err = effective_reader(reader, writer_doc, &w->reader_schema, why, whylen);
    if (err)
        return err;
    w->resolved_iface = avro_resolved_writer_new(w->schema, w->reader_schema);
    if (!w->resolved_iface) {
        SAY("the writer's %s does not resolve against ours: %s", reader->full_name,
            avro_strerror());
        return AP_ERR_DECODE;
    }
    w->reader_iface = avro_generic_class_from_schema(w->reader_schema);
    if (!w->reader_iface) {
        SAY("%s: %s", reader->full_name, avro_strerror());
        return AP_ERR_INTERNAL;
    }
    if (avro_resolved_writer_new_value(w->resolved_iface, &w->resolved)) {
        SAY("%s: %s", reader->full_name, avro_strerror());
        return AP_ERR_NOMEM;
    }
    w->has_resolved = true;
    if (avro_generic_value_new(w->reader_iface, &w->dest)) {
        SAY("%s: %s", reader->full_name, avro_strerror());
        return AP_ERR_NOMEM;
    }
    w->has_dest = true;
    avro_resolved_writer_set_dest(&w->resolved, &w->dest);
    w->reader = reader;
    return AP_OK;
}

/* The full name of a record schema's top level; NULL when it is not a record. Caller frees. */
static char *record_name(json_t *doc)
{
    json_t *type = json_object_get(doc, "type");
    if (!json_is_string(type) || (strcmp(json_string_value(type), "record") != 0 &&
                                  strcmp(json_string_value(type), "error") != 0))
        return NULL;
    return definition_name(doc, "");
}

static struct entry *entry_by_name(const ap_avro_codec_t *codec, const char *full_name)
{
    for (size_t i = 0; i < codec->count; i++) {
        if (strcmp(codec->entries[i].full_name, full_name) == 0)
            return &codec->entries[i];
    }
    return NULL;
}

static struct entry *entry_by_type(const ap_avro_codec_t *codec, ap_msg_type_t type,
                                   bool rejection)
{
    for (size_t i = 0; i < codec->count; i++) {
        struct entry *e = &codec->entries[i];
        if (rejection ? e->is_rejection : (type != AP_MSG_NONE && e->type == type))
            return e;
    }
    return NULL;
}

static ap_err_t entry_init(struct entry *e, const ap_avro_schema_src_t *src)
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
    e->full_name = record_name(e->doc);
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
    if ((err = writer_resolve(e->self, e, e->doc, why, sizeof why))) {
        AP_ERROR("avro", "schema %s: %s", src->path, why);
        return err;
    }
    return AP_OK;
}

static void entry_release(struct entry *e)
{
    writer_free(e->self);
    if (e->has_value)
        avro_value_decref(&e->value);
    if (e->iface)
        avro_value_iface_decref(e->iface);
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
        goto fail;
    for (size_t i = 0; i < ap_avro_schemas_count; i++) {
        codec->count = i + 1;
        if ((err = entry_init(&codec->entries[i], &ap_avro_schemas[i])))
            goto fail;
    }

    /* Every message type and the rejection have exactly one schema, and fingerprints and
     * names are unique: a mistake in schemas/avro/ fails here, at start-up. */
    err = AP_ERR_INTERNAL;
    for (int t = AP_MSG_NONE + 1; t < AP_MSG__COUNT; t++) {
        if (!entry_by_type(codec, (ap_msg_type_t)t, false)) {
            AP_ERROR("avro", "no schema for %s", ap_msg_type_name((ap_msg_type_t)t));
            goto fail;
        }
    }
    if (!entry_by_type(codec, AP_MSG_NONE, true)) {
        AP_ERROR("avro", "no schema for %s", AP_AVRO_REJECTION_NAME);
        goto fail;
    }
    for (size_t i = 0; i < codec->count; i++) {
        for (size_t j = i + 1; j < codec->count; j++) {
            if (strcmp(codec->entries[i].full_name, codec->entries[j].full_name) == 0 ||
                codec->entries[i].fingerprint == codec->entries[j].fingerprint) {
                AP_ERROR("avro", "schemas %s and %s clash", ap_avro_schemas[i].path,
                         ap_avro_schemas[j].path);
                goto fail;
            }
        }
    }
    *out = codec;
    return AP_OK;
fail:
    ap_avro_codec_free(codec);
    return err;
}

void ap_avro_codec_free(ap_avro_codec_t *codec)
{
    if (!codec)
        return;
    for (size_t i = 0; i < codec->cached; i++)
        writer_free(codec->cache[i]);
    free(codec->cache);
    for (size_t i = 0; i < codec->count; i++)
        entry_release(&codec->entries[i]);
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
    struct entry *e = entry_by_name(codec, full_name);
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

/* A field's value as our records see it: a string, an integer, or null (absent). */
struct fieldval {
    enum { FV_NULL, FV_STR, FV_INT } kind;
    const char *s; /* FV_STR: `len` bytes, NUL-terminated */
    size_t len;
    int64_t i;
};

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

static ap_err_t msg_get(const void *ctx, const char *name, struct fieldval *fv)
{
    const ap_msg_t *msg = ctx;

    if (strcmp(name, "ref") == 0)
        return str_field(msg->ref, sizeof msg->ref, fv);
    if (strcmp(name, "sku") == 0)
        return str_field(msg->sku, sizeof msg->sku, fv);
    if (strcmp(name, "orderid") == 0)
        return str_field(msg->orderid, sizeof msg->orderid, fv);
    if (strcmp(name, "batchref") == 0)
        return str_field(msg->batchref, sizeof msg->batchref, fv);
    if (strcmp(name, "qty") == 0) {
        fv->kind = FV_INT;
        fv->i = msg->qty;
        return AP_OK;
    }
    if (strcmp(name, "eta") == 0) {
        fv->kind = msg->has_eta ? FV_INT : FV_NULL;
        fv->i = msg->eta;
        return AP_OK;
    }
    return AP_ERR_INTERNAL;
}

static ap_err_t rejection_get(const void *ctx, const char *name, struct fieldval *fv)
{
    const ap_rejection_t *rejection = ctx;

    if (strcmp(name, "command_type") == 0) {
        /* "?" when the type is not known (ap_msg_type_name's spelling). */
        const char *type = ap_msg_type_name(rejection->command_type);
        return str_field(type, strlen(type) + 1, fv);
    }
    if (strcmp(name, "reason") == 0)
        return str_field(rejection->reason, sizeof rejection->reason, fv);
    if (strcmp(name, "message") == 0)
        return str_field(rejection->message, sizeof rejection->message, fv);
    if (strcmp(name, "source_topic") == 0)
        return str_field(rejection->source_topic, sizeof rejection->source_topic, fv);
    if (strcmp(name, "source_partition") == 0) {
        fv->kind = FV_INT;
        fv->i = rejection->source_partition;
        return AP_OK;
    }
    if (strcmp(name, "source_offset") == 0) {
        fv->kind = FV_INT;
        fv->i = rejection->source_offset;
        return AP_OK;
    }
    return AP_ERR_INTERNAL;
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

static ap_err_t encode(ap_avro_codec_t *codec, struct entry *e, field_get_fn get,
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

ap_err_t ap_avro_encode_event(ap_avro_codec_t *codec, const ap_msg_t *event, uint8_t **out,
                              size_t *len)
{
    struct entry *e = ap_msg_is_event(event->type) ? entry_by_type(codec, event->type, false)
                                                   : NULL;
    if (!e)
        return AP_ERR_INTERNAL;
    return encode(codec, e, msg_get, event, out, len);
}

ap_err_t ap_avro_encode_command(ap_avro_codec_t *codec, const ap_msg_t *cmd, uint8_t **out,
                                size_t *len)
{
    struct entry *e = ap_msg_is_command(cmd->type) ? entry_by_type(codec, cmd->type, false)
                                                   : NULL;
    if (!e)
        return AP_ERR_INTERNAL;
    return encode(codec, e, msg_get, cmd, out, len);
}

ap_err_t ap_avro_encode_rejection(ap_avro_codec_t *codec, const ap_rejection_t *rejection,
                                  uint8_t **out, size_t *len)
{
    struct entry *e = entry_by_type(codec, AP_MSG_NONE, true);
    if (!e)
        return AP_ERR_INTERNAL;
    return encode(codec, e, rejection_get, rejection, out, len);
}

/* Checking a body before avro-c reads it ------------------------------------------------- */

struct cursor {
    const uint8_t *p;
    size_t len, pos;
    const char *problem;
};

static bool fail(struct cursor *c, const char *problem)
{
    if (!c->problem)
        c->problem = problem;
    return false;
}

static size_t remaining(const struct cursor *c)
{
    return c->len - c->pos;
}

static bool take(struct cursor *c, uint64_t n)
{
    if (n > remaining(c))
        return fail(c, "truncated body");
    c->pos += (size_t)n;
    return true;
}

/* A zig-zag varint of at most 10 bytes, as avro-c reads it. */
static bool read_varint(struct cursor *c, int64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (c->pos >= c->len)
            return fail(c, "truncated body");
        uint8_t b = c->p[c->pos++];
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = (int64_t)((v >> 1) ^ (0 - (v & 1)));
            return true;
        }
    }
    return fail(c, "varint too long");
}

static bool check_value(avro_schema_t schema, struct cursor *c, int depth);

static bool check_length_prefixed(struct cursor *c)
{
    int64_t n;
    if (!read_varint(c, &n))
        return false;
    if (n < 0)
        return fail(c, "negative length");
    return take(c, (uint64_t)n);
}

/* Array and map blocks: count, [byte size when count < 0], items; a zero count ends. */
static bool check_blocks(avro_schema_t items, bool map, struct cursor *c, int depth)
{
    for (;;) {
        int64_t count, bytes = -1;
        if (!read_varint(c, &count))
            return false;
        if (count == 0)
            return true;
        if (count < 0) {
            if (count == INT64_MIN)
                return fail(c, "bad block count");
            count = -count;
            if (!read_varint(c, &bytes))
                return false;
            if (bytes < 0 || (uint64_t)bytes > remaining(c))
                return fail(c, "bad block size");
        }
        /* Bounds the work and avro-c's allocations by the body's size (items of zero
         * bytes, e.g. nulls, cannot outnumber the bytes left). */
        if ((uint64_t)count > remaining(c))
            return fail(c, "block count larger than the rest of the body");
        size_t start = c->pos;
        for (int64_t i = 0; i < count; i++) {
            if (map && !check_length_prefixed(c))
                return false;
            if (!check_value(items, c, depth + 1))
                return false;
        }
        if (bytes >= 0 && c->pos - start != (size_t)bytes)
            return fail(c, "block size does not match its items");
    }
}

static bool check_value(avro_schema_t schema, struct cursor *c, int depth)
{
    int64_t n;

    if (depth > MAX_DEPTH)
        return fail(c, "values nested too deeply");
    switch (avro_typeof(schema)) {
    case AVRO_NULL:
        return true;
    case AVRO_BOOLEAN:
        if (!take(c, 1))
            return false;
        return c->p[c->pos - 1] <= 1 ? true : fail(c, "bad boolean");
    case AVRO_INT32:
        if (!read_varint(c, &n))
            return false;
        return n >= INT32_MIN && n <= INT32_MAX ? true : fail(c, "int out of range");
    case AVRO_INT64:
        return read_varint(c, &n);
    case AVRO_FLOAT:
        return take(c, 4);
    case AVRO_DOUBLE:
        return take(c, 8);
    case AVRO_STRING:
    case AVRO_BYTES:
        return check_length_prefixed(c);
    case AVRO_FIXED:
        return take(c, (uint64_t)avro_schema_fixed_size(schema));
    case AVRO_ENUM:
        if (!read_varint(c, &n))
            return false;
        return n >= 0 && n < avro_schema_enum_number_of_symbols(schema)
                   ? true
                   : fail(c, "enum symbol out of range");
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(schema); i++) {
            if (!check_value(avro_schema_record_field_get_by_index(schema, (int)i), c,
                             depth + 1))
                return false;
        }
        return true;
    case AVRO_UNION:
        if (!read_varint(c, &n))
            return false;
        if (n < 0 || (uint64_t)n >= avro_schema_union_size(schema))
            return fail(c, "union branch out of range");
        return check_value(avro_schema_union_branch(schema, (int)n), c, depth + 1);
    case AVRO_ARRAY:
        return check_blocks(avro_schema_array_items(schema), false, c, depth);
    case AVRO_MAP:
        return check_blocks(avro_schema_map_values(schema), true, c, depth);
    case AVRO_LINK:
        return check_value(avro_schema_link_target(schema), c, depth + 1);
    default:
        return fail(c, "unsupported type in the writer schema");
    }
}

/* Decoding ------------------------------------------------------------------------------- */

/* Builds (and the caller caches) the writer for registry id `id` from its JSON; on a schema
 * we cannot use, the writer says why in `error`. NULL only when out of memory. */
static struct writer *writer_from_json(ap_avro_codec_t *codec, int32_t id, const char *json)
{
    char text[512] = "";
    char *why = text; /* for SAY */
    size_t whylen = sizeof text;
    json_error_t jerr;
    char *name = NULL;
    struct entry *e;
    struct writer *w = calloc(1, sizeof *w);

    if (!w)
        return NULL;
    w->id = id;
    json_t *doc = json_loads(json, JSON_DECODE_ANY, &jerr);
    if (!doc) {
        SAY("writer schema id %d is not JSON: %s", (int)id, jerr.text);
        goto out;
    }
    if (!(name = record_name(doc))) {
        SAY("writer schema id %d is not a record", (int)id);
        goto out;
    }
    if (!(e = entry_by_name(codec, name))) {
        SAY("writer schema id %d is %s, which we do not know", (int)id, name);
        goto out;
    }
    if (avro_schema_from_json_length(json, strlen(json), &w->schema)) {
        SAY("writer schema id %d: %s", (int)id, avro_strerror());
        w->schema = NULL;
        goto out;
    }
    writer_resolve(w, e, doc, why, whylen);
out:
    if (!w->reader && !(w->error = strdup(why[0] ? why : "unusable writer schema"))) {
        writer_free(w);
        w = NULL;
    }
    free(name);
    json_decref(doc);
    return w;
}

static ap_err_t writer_by_id(ap_avro_codec_t *codec, int32_t id, struct writer **out,
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
        SAY("unknown writer schema id %d", (int)id);
        return AP_ERR_DECODE;
    }
    ap_err_t err = codec->lookup(codec->lookup_ctx, id, &json);
    if (err == AP_ERR_NOT_FOUND) {
        SAY("unknown writer schema id %d", (int)id);
        return AP_ERR_DECODE;
    }
    if (err) {
        /* The registry is unreachable, say: not the message's fault, so no DECODE. */
        SAY("looking up writer schema id %d: %s", (int)id, ap_strerror(err));
        return err;
    }
    if (codec->cached == codec->cache_cap) {
        size_t cap = codec->cache_cap ? 2 * codec->cache_cap : 8;
        struct writer **cache = realloc(codec->cache, cap * sizeof *cache);
        if (!cache) {
            free(json);
            return AP_ERR_NOMEM;
        }
        codec->cache = cache;
        codec->cache_cap = cap;
    }
    struct writer *w = writer_from_json(codec, id, json ? json : "");
    free(json);
    if (!w)
        return AP_ERR_NOMEM;
    codec->cache[codec->cached++] = w;
    *out = w;
    return AP_OK;
}

/* Finds the writer named by the framing; *header receives the framing's length. */
static ap_err_t framed_writer(ap_avro_codec_t *codec, const uint8_t *bytes, size_t len,
                              struct writer **out, size_t *header, char *why, size_t whylen)
{
    if (len == 0) {
        SAY("empty value");
        return AP_ERR_DECODE;
    }
    if (bytes[0] == 0xC3) {
        uint64_t fp = 0;
        if (len < SINGLE_OBJECT_HEADER || bytes[1] != 0x01) {
            SAY(len < SINGLE_OBJECT_HEADER ? "truncated single-object header"
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
        SAY("unknown writer schema fingerprint %016llx", (unsigned long long)fp);
        return AP_ERR_DECODE;
    }
    if (bytes[0] == 0x00) {
        if (len < CONFLUENT_HEADER) {
            SAY("truncated confluent header");
            return AP_ERR_DECODE;
        }
        uint32_t id = (uint32_t)bytes[1] << 24 | (uint32_t)bytes[2] << 16 |
                      (uint32_t)bytes[3] << 8 | (uint32_t)bytes[4];
        ap_err_t err = writer_by_id(codec, (int32_t)id, out, why, whylen);
        if (!err)
            *header = CONFLUENT_HEADER;
        return err;
    }
    SAY("not Avro (first byte 0x%02x)", bytes[0]);
    return AP_ERR_DECODE;
}

/* Checks the body, then reads it into w->dest. */
static ap_err_t read_body(ap_avro_codec_t *codec, struct writer *w, const uint8_t *body,
                          size_t len, char *why, size_t whylen)
{
    struct cursor c = {body, len, 0, NULL};

    if (!check_value(w->schema, &c, 0)) {
        SAY("%s: %s at byte %zu", w->reader->full_name, c.problem, c.pos);
        return AP_ERR_DECODE;
    }
    if (c.pos != len) {
        SAY("%s: %zu trailing bytes after the record", w->reader->full_name, len - c.pos);
        return AP_ERR_DECODE;
    }
    avro_value_reset(&w->dest);
    avro_reader_memory_set_source(codec->reader, (const char *)body, (int64_t)len);
    if (avro_value_read(codec->reader, &w->resolved)) {
        SAY("%s: %s", w->reader->full_name, avro_strerror());
        return AP_ERR_DECODE;
    }
    return AP_OK;
}

/* Frames, finds and checks: on success w->dest holds the record. */
static ap_err_t decode_record(ap_avro_codec_t *codec, const void *value, size_t len,
                              struct writer **out, bool commands_only, char *why, size_t whylen)
{
    struct writer *w = NULL;
    size_t header = 0;
    ap_err_t err = framed_writer(codec, value, len, &w, &header, why, whylen);

    if (err)
        return err;
    if (!w->reader) {
        SAY("%s", w->error);
        return AP_ERR_DECODE;
    }
    if (commands_only && !ap_msg_is_command(w->reader->type)) {
        SAY("%s is not a command", w->reader->full_name);
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
static ap_err_t field_value(struct writer *w, json_t *field, struct fieldval *fv)
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
            SAY("field %s must be at most %d bytes with no NUL", name, AP_STR_MAX);
            return AP_ERR_INVALID_COMMAND;
        }
        if (!utf8_valid(fv->s, fv->len)) {
            SAY("field %s is not valid UTF-8", name);
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
            SAY("field eta must be a date in the years 0001-9999");
            return AP_ERR_INVALID_COMMAND;
        }
        msg->eta = msg->has_eta ? (int32_t)fv->i : 0;
    }
    return AP_OK;
}

ap_err_t ap_avro_decode_command(ap_avro_codec_t *codec, const void *value, size_t len,
                                ap_msg_t *cmd, char *why, size_t whylen)
{
    struct writer *w = NULL;
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
            SAY("%s: cannot map field %s", w->reader->full_name, name);
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
    struct writer *w = NULL;
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
            SAY("%s: cannot map field %s", w->reader->full_name, name);
            goto out;
        }
        if (fv.kind == FV_NULL) {
            member = json_null();
        } else if (fv.kind == FV_STR) {
            member = json_stringn(fv.s, fv.len);
            if (!member) {
                SAY("%s: field %s is not UTF-8", w->reader->full_name, name);
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
