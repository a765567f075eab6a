/*
 * decode_stream.c - kcat's length-prefixed stream of event values to JSON lines (see the
 * header). Not a consumer: it reads a file, it knows nothing of Kafka.
 */
#include "entrypoints/decode_stream.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* A value is read in steps of this many bytes at most: its length prefix is only a claim. */
#define STEP (64 * 1024)

/*
 * Reads a value of `len` bytes into *buf (of *cap bytes, grown as the bytes arrive, so a
 * length prefix of 4 GB followed by a few bytes costs a few bytes, not 4 GB). *got receives
 * how many were read: fewer than `len` at end of input. False when memory runs out.
 */
static bool read_value(FILE *in, unsigned char **buf, size_t *cap, size_t len, size_t *got)
{
    size_t have = 0;
    while (have < len) {
        size_t step = len - have < STEP ? len - have : STEP;
        if (have + step > *cap) {
            size_t want = *cap * 2 > have + step ? *cap * 2 : have + step;
            unsigned char *grown = realloc(*buf, want < len ? want : len);
            if (!grown)
                return false;
            *buf = grown;
            *cap = want < len ? want : len;
        }
        size_t n = fread(*buf + have, 1, step, in);
        have += n;
        if (n < step)
            break;
    }
    *got = have;
    return true;
}

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
        size_t got = 0;
        if (!read_value(in, &value, &cap, len, &got))
            goto out;
        if (got < len) {
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
