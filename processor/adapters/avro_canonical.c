/*
 * avro_canonical.c - Parsing Canonical Form and the CRC-64-AVRO fingerprint of a schema, as
 * the Avro specification defines them (avro-c 1.11.1 has neither); tested against the
 * specification's vectors (tests/unit/test_avro.c).
 *
 * Pure: JSON text in, text or a number out. It parses no Avro and knows none of our schemas.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/avro_internal.h"
#include "ap/strbuf.h"

#define CRC64_EMPTY UINT64_C(0xc15d213aa4d7a795)

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

/* A JSON string literal. Escapes are replaced by the characters themselves (STRINGS); only
 * what JSON requires is escaped again. */
static void add_quoted(ap_strbuf_t *sb, const char *s)
{
    ap_strbuf_addch(sb, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            ap_strbuf_add(sb, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            ap_strbuf_add(sb, esc, 6);
        } else {
            ap_strbuf_addch(sb, *s);
        }
    }
    ap_strbuf_addch(sb, '"');
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

static bool canon(json_t *node, const char *space, ap_strbuf_t *sb);

static bool canon_named(json_t *node, const char *type, const char *space, ap_strbuf_t *sb)
{
    bool ok = false;
    char *full = definition_name(node, space);
    if (!full)
        return false;

    ap_strbuf_adds(sb, "{\"name\":");
    add_quoted(sb, full);
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
        ap_strbuf_adds(sb, ",\"type\":\"record\",\"fields\":[");
        json_array_foreach(fields, i, field) {
            json_t *name = json_object_get(field, "name");
            if (!json_is_string(name) || !json_object_get(field, "type"))
                goto out;
            ap_strbuf_adds(sb, i ? ",{\"name\":" : "{\"name\":");
            add_quoted(sb, json_string_value(name));
            ap_strbuf_adds(sb, ",\"type\":");
            if (!canon(json_object_get(field, "type"), inner, sb))
                goto out;
            ap_strbuf_adds(sb, "}");
        }
        ap_strbuf_adds(sb, "]}");
    } else if (strcmp(type, "enum") == 0) {
        json_t *symbols = json_object_get(node, "symbols");
        size_t i;
        json_t *symbol;
        if (!json_is_array(symbols))
            goto out;
        ap_strbuf_adds(sb, ",\"type\":\"enum\",\"symbols\":[");
        json_array_foreach(symbols, i, symbol) {
            if (!json_is_string(symbol))
                goto out;
            if (i)
                ap_strbuf_adds(sb, ",");
            add_quoted(sb, json_string_value(symbol));
        }
        ap_strbuf_adds(sb, "]}");
    } else { /* fixed */
        json_t *size = json_object_get(node, "size");
        char digits[32];
        if (!json_is_integer(size))
            goto out;
        /* INTEGERS: printed anew, so no leading zeros. */
        snprintf(digits, sizeof digits, "%" JSON_INTEGER_FORMAT, json_integer_value(size));
        ap_strbuf_adds(sb, ",\"type\":\"fixed\",\"size\":");
        ap_strbuf_adds(sb, digits);
        ap_strbuf_adds(sb, "}");
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
static bool canon(json_t *node, const char *space, ap_strbuf_t *sb)
{
    if (json_is_string(node)) {
        const char *name = json_string_value(node);
        if (is_primitive(name)) {
            add_quoted(sb, name);
            return true;
        }
        char *full = full_name_of(name, space);
        if (!full) {
            sb->failed = true;
            return false;
        }
        add_quoted(sb, full);
        free(full);
        return true;
    }
    if (json_is_array(node)) {
        size_t i;
        json_t *branch;
        ap_strbuf_adds(sb, "[");
        json_array_foreach(node, i, branch) {
            if (i)
                ap_strbuf_adds(sb, ",");
            if (!canon(branch, space, sb))
                return false;
        }
        ap_strbuf_adds(sb, "]");
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
        ap_strbuf_adds(sb, t[0] == 'a' ? "{\"type\":\"array\",\"items\":"
                                : "{\"type\":\"map\",\"values\":");
        if (!canon(inner, space, sb))
            return false;
        ap_strbuf_adds(sb, "}");
        return true;
    }
    /* A primitive, or a reference to a named type, in the object form. */
    return canon(type, space, sb);
}

ap_err_t ap_avro_canonical_form(const char *schema_json, char **canonical)
{
    json_error_t jerr;
    ap_strbuf_t sb = AP_STRBUF_INIT;
    ap_err_t err = AP_ERR_DECODE;

    json_t *root = json_loads(schema_json, JSON_DECODE_ANY, &jerr);
    if (!root)
        return AP_ERR_DECODE;
    if (!canon(root, "", &sb) || sb.failed || !sb.buf) {
        err = sb.failed ? AP_ERR_NOMEM : AP_ERR_DECODE;
        ap_strbuf_release(&sb);
        goto out;
    }
    *canonical = ap_strbuf_detach(&sb);
    err = AP_OK;
out:
    json_decref(root);
    return err;
}


char *ap_avro_record_name(json_t *doc)
{
    json_t *type = json_object_get(doc, "type");
    if (!json_is_string(type) || (strcmp(json_string_value(type), "record") != 0 &&
                                  strcmp(json_string_value(type), "error") != 0))
        return NULL;
    return definition_name(doc, "");
}
