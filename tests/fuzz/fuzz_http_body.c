/*
 * fuzz_http_body.c - libFuzzer harness of the body parser of POST /add_batch and /allocate
 * (ap_http_parse_command): the input is the body, given as the HTTP adapter gives it, a
 * NUL-terminated copy, and parsed for both routes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "entrypoints/http_routes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[512];
    ap_msg_t cmd;
    char *body = malloc(size + 1);

    if (!body)
        abort();
    memcpy(body, data, size);
    body[size] = '\0';
    if (ap_http_parse_command(body, size, AP_CMD_CREATE_BATCH, &cmd, why, sizeof why) == AP_OK &&
        (cmd.type != AP_CMD_CREATE_BATCH || cmd.qty <= 0))
        abort();
    if (ap_http_parse_command(body, size, AP_CMD_ALLOCATE, &cmd, why, sizeof why) == AP_OK &&
        (cmd.type != AP_CMD_ALLOCATE || cmd.qty <= 0))
        abort();
    free(body);
    return 0;
}
