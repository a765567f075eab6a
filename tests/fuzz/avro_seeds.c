/*
 * avro_seeds.c - `fuzz-avro-seeds DIR`: writes the Avro seed inputs the encoder makes, so
 * the seeds follow the schemas: DIR/avro_command/ gets every command in both framings,
 * DIR/decode_stream/ kcat-style streams (4-byte big-endian length, value) of every event, a
 * rejection and a command, in both framings, with a NULL value (-1) among them.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ap/avro.h"
#include "fuzz_codec.h"

static void write_file(const char *dir, const char *sub, const char *name, const uint8_t *data,
                       size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, len, fp) != len || fclose(fp) != 0) {
        perror(path);
        exit(1);
    }
}

/* Appends a length-prefixed value (len UINT32_MAX with no bytes: a NULL value). */
static void append(uint8_t **stream, size_t *slen, const uint8_t *value, uint32_t len)
{
    size_t n = len == UINT32_MAX ? 0 : len;
    *stream = realloc(*stream, *slen + 4 + n);
    if (!*stream)
        exit(1);
    uint8_t *p = *stream + *slen;
    p[0] = (uint8_t)(len >> 24);
    p[1] = (uint8_t)(len >> 16);
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
    if (n)
        memcpy(p + 4, value, n);
    *slen += 4 + n;
}

static void messages(ap_msg_t msgs[8])
{
    memset(msgs, 0, 8 * sizeof *msgs);
    for (int t = AP_CMD_CREATE_BATCH; t <= AP_EVT_OUT_OF_STOCK; t++) {
        ap_msg_t *m = &msgs[t - 1];
        m->type = (ap_msg_type_t)t;
        strcpy(m->ref, "b1");
        strcpy(m->sku, "RED-CHAIR");
        strcpy(m->orderid, "o1");
        strcpy(m->batchref, "b1");
        m->qty = t == AP_CMD_CHANGE_BATCH_QUANTITY ? 5 : 100;
        m->has_eta = t == AP_CMD_CREATE_BATCH || t == AP_EVT_BATCH_CREATED;
        m->eta = 20811; /* 2026-12-24 */
    }
}

int main(int argc, char **argv)
{
    static const ap_wire_format_t formats[] = {AP_WIRE_SINGLE_OBJECT, AP_WIRE_CONFLUENT};
    ap_msg_t msgs[8];
    char name[64];

    if (argc != 2) {
        fprintf(stderr, "usage: fuzz-avro-seeds DIR\n");
        return 2;
    }
    messages(msgs);
    for (int f = 0; f < 2; f++) {
        ap_avro_codec_t *codec = fuzz_codec_new(formats[f]);
        uint8_t *stream = NULL, *value = NULL;
        size_t slen = 0, len = 0;
        for (int i = 0; i < 8; i++) {
            bool command = ap_msg_is_command(msgs[i].type);
            ap_err_t err = command ? ap_avro_encode_command(codec, &msgs[i], &value, &len)
                                   : ap_avro_encode_event(codec, &msgs[i], &value, &len);
            if (err) {
                fprintf(stderr, "encode %s: %s\n", ap_msg_type_name(msgs[i].type),
                        ap_strerror(err));
                return 1;
            }
            if (command) {
                snprintf(name, sizeof name, "%s-%s", f ? "confluent" : "single",
                         ap_msg_type_name(msgs[i].type));
                write_file(argv[1], "avro_command", name, value, len);
            }
            append(&stream, &slen, value, (uint32_t)len);
            if (i == 3)
                append(&stream, &slen, NULL, UINT32_MAX);
            free(value);
        }
        ap_rejection_t r;
        memset(&r, 0, sizeof r);
        r.command_type = AP_CMD_ALLOCATE;
        strcpy(r.reason, "invalid_sku");
        strcpy(r.message, "Invalid sku NOPE");
        strcpy(r.source_topic, "allocation.commands");
        r.source_partition = 3;
        r.source_offset = 1234;
        if (ap_avro_encode_rejection(codec, &r, &value, &len))
            return 1;
        append(&stream, &slen, value, (uint32_t)len);
        free(value);
        snprintf(name, sizeof name, "%s-stream", f ? "confluent" : "single");
        write_file(argv[1], "decode_stream", name, stream, slen);
        free(stream);
        ap_avro_codec_free(codec);
    }
    return 0;
}
