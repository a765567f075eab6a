/*
 * avro_seeds.c - `fuzz-avro-seeds DIR`: writes the Avro seed inputs the encoder makes, so
 * the seeds follow the schemas: DIR/avro_command/ gets every command in both framings,
 * DIR/decode_stream/ kcat-style streams (4-byte big-endian length, value) of every event, a
 * rejection and a command, in both framings, with a NULL value (-1) among them, and
 * DIR/registry_answer/ fuzz_registry_answer's inputs: the registry's answer of each command's
 * schema (2-byte length, {"schema": ...}) then the command's Avro body, and a few other answers.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

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

/* One fuzz_registry_answer input: the answer's length and bytes, then `rest`. */
static void write_answer(const char *dir, const char *name, const char *answer,
                         const uint8_t *rest, size_t restlen)
{
    size_t n = strlen(answer);
    uint8_t *input = malloc(2 + n + restlen);
    if (!input || n > UINT16_MAX)
        exit(1);
    input[0] = (uint8_t)(n >> 8);
    input[1] = (uint8_t)n;
    memcpy(input + 2, answer, n);
    if (restlen)
        memcpy(input + 2 + n, rest, restlen);
    write_file(dir, "registry_answer", name, input, 2 + n + restlen);
    free(input);
}

/* For each command in confluent framing (00, id FUZZ_SCHEMA_ID_BASE + schema index, body):
 * the registry's answer for that id, then the body. */
static void registry_seeds(const char *dir, ap_avro_codec_t *codec, const ap_msg_t *cmd,
                           const uint8_t *value, size_t len)
{
    const char *name, *text;
    char file[64];
    size_t index = ((size_t)value[3] << 8 | value[4]) - FUZZ_SCHEMA_ID_BASE;

    if (len < 5 || !ap_avro_schema_at(codec, index, &name, &text))
        exit(1);
    json_t *answer = json_pack("{s:s}", "schema", text);
    char *body = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
    if (!body)
        exit(1);
    snprintf(file, sizeof file, "schema-%s", ap_msg_type_name(cmd->type));
    write_answer(dir, file, body, value + 5, len - 5);
    free(body);
    json_decref(answer);
}

static void registry_other_seeds(const char *dir)
{
    write_answer(dir, "registered", "{\"id\":12}", NULL, 0);
    write_answer(dir, "refused",
                 "{\"error_code\":409,\"message\":\"Schema being registered is incompatible\"}",
                 NULL, 0);
    write_answer(dir, "not-a-record", "{\"schema\":\"\\\"string\\\"\"}", NULL, 0);
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
                if (formats[f] == AP_WIRE_CONFLUENT)
                    registry_seeds(argv[1], codec, &msgs[i], value, len);
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
    registry_other_seeds(argv[1]);
    return 0;
}
