/*
 * fuzz_avro_command.c - libFuzzer harness of the Avro command decoder in both framings
 * (C3 01 + fingerprint, 00 + registry id) through ap_command_decode, the consumer's entry,
 * with the registry faked in process (fuzz_codec.h). A command that decodes must survive
 * encoding in the framing it came in and decoding again unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ap/codec.h"
#include "fuzz_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ap_avro_codec_t *single, *confluent;

static bool same(const ap_msg_t *a, const ap_msg_t *b)
{
    return a->type == b->type && strcmp(a->ref, b->ref) == 0 && strcmp(a->sku, b->sku) == 0 &&
           strcmp(a->orderid, b->orderid) == 0 && strcmp(a->batchref, b->batchref) == 0 &&
           a->qty == b->qty && a->has_eta == b->has_eta && (!a->has_eta || a->eta == b->eta);
}

static void release(void)
{
    ap_avro_codec_free(single);
    ap_avro_codec_free(confluent);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ap_msg_t cmd, back;
    char why[512];
    uint8_t *value = NULL;
    size_t len = 0;

    if (!single) {
        single = fuzz_codec_new(AP_WIRE_SINGLE_OBJECT);
        confluent = fuzz_codec_new(AP_WIRE_CONFLUENT);
        atexit(release);
    }
    ap_avro_codec_t *codec = size && data[0] == 0x00 ? confluent : single;
    if (ap_command_decode(codec, data, size, AP_MSG_NONE, false, &cmd, why, sizeof why) != AP_OK)
        return 0;
    if (!ap_avro_is_framed(data, size))
        return 0; /* JSON: fuzz_json_command's */
    if (ap_avro_encode_command(codec, &cmd, &value, &len) != AP_OK)
        abort();
    if (ap_command_decode(codec, value, len, AP_MSG_NONE, false, &back, why, sizeof why) !=
            AP_OK ||
        !same(&cmd, &back))
        abort(); /* a decoded command that does not round-trip */
    free(value);
    return 0;
}
