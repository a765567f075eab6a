/*
 * decode_stream.c - kcat's length-prefixed stream of event values to JSON lines (see the
 * header). Not a consumer: it reads a file, it knows nothing of Kafka.
 */
#include "entrypoints/decode_stream.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* Reads exactly `len` bytes; false at end of input (or on a short read). */
static bool read_exact(FILE *in, void *buf, size_t len)
{
    return len == 0 || fread(buf, 1, len, in) == len;
}

ap_err_t ap_decode_stream(ap_avro_codec_t *codec, FILE *in, FILE *out, FILE *errout,
                          size_t *failed)
{
    unsigned char header[4], *value = NULL;
    size_t cap = 0, count = 0, nfailed = 0;
    ap_err_t rc = AP_ERR_NOMEM;

    while (read_exact(in, header, sizeof header)) {
        uint32_t len = (uint32_t)header[0] << 24 | (uint32_t)header[1] << 16 |
                       (uint32_t)header[2] << 8 | header[3];
        if (len == UINT32_MAX)
            continue; /* kcat's -1: a NULL value (a tombstone) */
        if (len > cap) {
            unsigned char *grown = realloc(value, len);
            if (!grown)
                goto out;
            value = grown;
            cap = len;
        }
        if (!read_exact(in, value, len)) {
            fprintf(errout, "allocation-processor: decode: input ends inside a value\n");
            nfailed++;
            break;
        }
        char *json = NULL, why[512] = "";
        count++;
        if (ap_avro_decode_to_json(codec, value, len, &json, why, sizeof why) == AP_OK) {
            fprintf(out, "%s\n", json);
            free(json);
        } else {
            fprintf(errout, "allocation-processor: decode: value %zu: %s\n", count, why);
            nfailed++;
        }
    }
    fflush(out);
    *failed = nfailed;
    rc = AP_OK;
out:
    free(value);
    return rc;
}
