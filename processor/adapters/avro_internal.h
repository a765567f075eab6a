/*
 * avro_internal.h - what the files of the Avro adapter share (ap/avro.h is their public face):
 *
 *   avro_canonical.c  Parsing Canonical Form and the CRC-64-AVRO fingerprint (pure)
 *   avro_check.c      the walk of an untrusted body against its writer schema
 *   avro_codec.c      our compiled-in schemas, writer resolution, encoding and framing
 *   avro_decode.c     finding a body's writer schema, decoding commands and JSON lines
 *
 * Private to those files. A codec belongs to one thread.
 */
#ifndef AP_ADAPTERS_AVRO_INTERNAL_H
#define AP_ADAPTERS_AVRO_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <avro.h>
#include <jansson.h>

#include "ap/avro.h"

#define SINGLE_OBJECT_HEADER 10 /* C3 01 + 8-byte fingerprint */
#define CONFLUENT_HEADER 5      /* 00 + 4-byte id */

/* Days since 1970-01-01 of 0001-01-01 and 9999-12-31: the dates "YYYY-MM-DD" can spell. */
#define DATE_MIN (-719162)
#define DATE_MAX 2932896

struct known_schema;

/* A writer schema resolved against our reader of the same name, ready to read bodies. */
struct writer_schema {
    int32_t id;                        /* the registry's id (cached writers only) */
    const struct known_schema *reader; /* NULL when unusable; `error` says why */
    char *error;
    avro_schema_t schema;              /* the writer's */
    avro_schema_t reader_schema; /* ours, less the fields the writer lacks (they have defaults) */
    avro_value_iface_t *resolved_iface;
    avro_value_iface_t *reader_iface;
    avro_value_t resolved; /* reads the writer's encoding into `dest` */
    avro_value_t dest;     /* an instance of reader_schema */
    bool has_resolved, has_dest;
};

/* One compiled-in schema: our reader of records of its name, and its writer when we encode. */
struct known_schema {
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
    struct writer_schema *self; /* this schema as its own writer (the single-object path) */
};

struct ap_avro_codec {
    ap_wire_format_t format;
    struct known_schema *entries;
    size_t count;
    struct writer_schema **cache; /* writers fetched by registry id, including failures */
    size_t cached, cache_cap;
    ap_schema_lookup_fn lookup;
    void *lookup_ctx;
    avro_reader_t reader;
    avro_writer_t writer;
};

/* A field's value as our records see it: a string, an integer, or null (absent). */
struct fieldval {
    enum { FV_NULL, FV_STR, FV_INT } kind;
    const char *s; /* FV_STR: `len` bytes, NUL-terminated */
    size_t len;
    int64_t i;
};

/* Releases a writer schema and everything resolved from it; NULL is a no-op (avro_codec.c). */
void ap_avro_writer_free(struct writer_schema *w);

/* Resolves writer schema `w` (its `schema` parsed from `writer_doc`) against our `reader`;
 * on success w->reader is set, otherwise `why` says what is wrong (avro_codec.c). */
ap_err_t ap_avro_writer_resolve(struct writer_schema *w, const struct known_schema *reader,
                                json_t *writer_doc, char *why, size_t whylen);

/* Our schema of that full name, or NULL (avro_codec.c). */
struct known_schema *ap_avro_known_schema(const ap_avro_codec_t *codec, const char *full_name);

/* The full name of a record schema's top level ("namespace.name"); NULL when it is not a
 * record. Caller frees (avro_canonical.c, which knows how names are spelled). */
char *ap_avro_record_name(json_t *doc);

/*
 * Walks an Avro binary body against its writer schema with strict bounds (lengths, union
 * branches, enum symbols, block counts, nesting depth) before avro-c, which believes every
 * length and count, reads it (avro_check.c). True when `body` starts with one well-formed
 * value, *end then being its length (the caller judges trailing bytes); else false with
 * *problem (static text) and *end the byte offset where it went wrong. Reads `body` only.
 */
bool ap_avro_check_body(avro_schema_t schema, const uint8_t *body, size_t len,
                        const char **problem, size_t *end);

#endif
