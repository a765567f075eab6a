/*
 * fuzz_json_command.c - libFuzzer harness of the JSON command decoder (ap_command_decode with
 * no Avro codec, i.e. what kcat users type): every input is decoded with no hint, with a
 * topic's hint and with a header's overriding hint. A command that decodes must survive
 * encoding back to JSON and decoding again unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ap/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(const ap_msg_t *a, const ap_msg_t *b)
{
    return a->type == b->type && strcmp(a->ref, b->ref) == 0 && strcmp(a->sku, b->sku) == 0 &&
           strcmp(a->orderid, b->orderid) == 0 && strcmp(a->batchref, b->batchref) == 0 &&
           a->qty == b->qty && a->has_eta == b->has_eta && (!a->has_eta || a->eta == b->eta);
}

static void one(const uint8_t *data, size_t size, ap_msg_type_t hint, bool overrides)
{
    ap_msg_t cmd, back;
    char why[512], *json = NULL;

    if (ap_command_decode(NULL, data, size, hint, overrides, &cmd, why, sizeof why) != AP_OK)
        return;
    if (ap_command_encode_json(&cmd, &json) != AP_OK)
        abort();
    if (ap_command_decode(NULL, json, strlen(json), AP_MSG_NONE, false, &back, why,
                          sizeof why) != AP_OK ||
        !same(&cmd, &back))
        abort(); /* a decoded command that does not round-trip */
    free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one(data, size, AP_MSG_NONE, false);
    one(data, size, AP_CMD_ALLOCATE, false);
    one(data, size, AP_CMD_CHANGE_BATCH_QUANTITY, true);
    return 0;
}
