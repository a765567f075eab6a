/*
 * fuzz_codec.c - the harnesses' codec and in-process registry (see the header).
 */
#include "fuzz_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char evolved_allocate[] =
    "{\"type\":\"record\",\"name\":\"Allocate\",\"namespace\":\"com.made.allocation.commands\","
    "\"fields\":[{\"name\":\"orderid\",\"type\":\"string\"},{\"name\":\"sku\",\"type\":\"string\"},"
    "{\"name\":\"qty\",\"type\":\"long\"},{\"name\":\"note\",\"type\":[\"null\",\"string\"]}]}";
static const char foreign_record[] =
    "{\"type\":\"record\",\"name\":\"Other\",\"namespace\":\"com.example\","
    "\"fields\":[{\"name\":\"x\",\"type\":\"int\"}]}";

static ap_err_t lookup(void *ctx, int32_t id, char **schema_json)
{
    const char *text;
    (void)ctx;
    switch (id) {
    case FUZZ_ID_EVOLVED: text = evolved_allocate; break;
    case FUZZ_ID_NOT_JSON: text = "{not json"; break;
    case FUZZ_ID_FOREIGN: text = foreign_record; break;
    case FUZZ_ID_UNAVAILABLE: return AP_ERR_UNAVAILABLE;
    default: return AP_ERR_NOT_FOUND;
    }
    *schema_json = strdup(text);
    return *schema_json ? AP_OK : AP_ERR_NOMEM;
}

ap_avro_codec_t *fuzz_codec_new(ap_wire_format_t format)
{
    ap_avro_codec_t *codec = NULL;
    const char *name, *text;
    if (ap_avro_codec_new(format, &codec) != AP_OK)
        abort();
    for (size_t i = 0; ap_avro_schema_at(codec, i, &name, &text); i++) {
        if (ap_avro_codec_set_schema_id(codec, name, (int32_t)(FUZZ_SCHEMA_ID_BASE + i)) != AP_OK)
            abort();
    }
    ap_avro_codec_set_lookup(codec, lookup, NULL);
    return codec;
}
