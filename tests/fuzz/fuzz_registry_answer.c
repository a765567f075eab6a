/*
 * fuzz_registry_answer.c - libFuzzer harness of what the processor does with a schema
 * registry's answers, which it trusts no more than a message: the registry client's readers
 * of a registration's answer, a schema fetched by id and a refusal (registry.h), then the
 * schema fetched, as the Avro codec's writer schema for a confluent-framed command whose
 * body is the rest of the input.
 *
 * Input: 2 bytes (big endian) giving the answer's length N, N bytes of answer body, then the
 * Avro body of a command (after the 5-byte framing). The codec forgets the writer before
 * each input, so every input's answer is parsed, checked and resolved afresh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ap/codec.h"
#include "ap/registry.h"
#include "fuzz_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ap_avro_codec_t *codec;
static char *answered; /* the schema the current input's answer holds */

static void release(void)
{
    ap_avro_codec_free(codec);
}

/* The registry as the codec sees it: FUZZ_ID_ANSWER is the answer's schema. */
static ap_err_t lookup(void *ctx, int32_t id, char **schema_json)
{
    (void)ctx;
    if (id != FUZZ_ID_ANSWER)
        return AP_ERR_NOT_FOUND;
    *schema_json = strdup(answered);
    return *schema_json ? AP_OK : AP_ERR_NOMEM;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[512];
    int32_t id;
    ap_msg_t cmd;
    char *json = NULL;

    if (!codec) {
        codec = fuzz_codec_new(AP_WIRE_CONFLUENT);
        ap_avro_codec_set_lookup(codec, lookup, NULL);
        atexit(release);
    }
    if (size < 2)
        return 0;
    size_t n = (size_t)data[0] << 8 | data[1];
    if (n > size - 2)
        n = size - 2;
    const char *body = (const char *)data + 2;

    if (ap_registry_answer_id(body, n, &id) == AP_OK && id < 0)
        abort();
    ap_registry_answer_refusal(body, n, 409, why, sizeof why);
    if (strlen(why) >= sizeof why)
        abort();
    if (ap_registry_answer_schema(body, n, &answered) != AP_OK)
        return 0;

    size_t rest = size - 2 - n, len = 5 + rest;
    uint8_t *value = malloc(len);
    if (!value)
        abort();
    value[0] = 0x00;
    value[1] = value[2] = value[3] = 0;
    value[4] = FUZZ_ID_ANSWER;
    memcpy(value + 5, data + 2 + n, rest);
    ap_avro_codec_forget_writers(codec);
    ap_command_decode(codec, value, len, AP_MSG_NONE, false, &cmd, why, sizeof why);
    /* The `decode` tool's path, which takes any record we know (the writer is the same). */
    if (ap_avro_decode_to_json(codec, value, len, &json, why, sizeof why) == AP_OK)
        free(json);
    free(value);
    free(answered);
    answered = NULL;
    return 0;
}
