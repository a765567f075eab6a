/*
 * avro_check.c - the walk of an untrusted Avro body: avro-c believes the lengths and counts
 * it reads, so before it sees a body, this walks it against the writer schema with strict
 * bounds (lengths, union branches, enum symbols, block counts, nesting depth). avro-c then
 * only ever reads a body known to be well formed, which also avoids its leak on truncated
 * input.
 *
 * It reads and judges; it decodes nothing and allocates nothing.
 */
#include <avro.h>
#include <stdbool.h>
#include <stdint.h>

#include "adapters/avro_internal.h"

#define MAX_DEPTH 32 /* nesting of values inside one body */

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

bool ap_avro_check_body(avro_schema_t schema, const uint8_t *body, size_t len,
                        const char **problem, size_t *end)
{
    struct cursor c = {body, len, 0, NULL};
    bool ok = check_value(schema, &c, 0);
    *problem = c.problem;
    *end = c.pos;
    return ok;
}
