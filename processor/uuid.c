/*
 * uuid.c - fresh UUIDv4s from getrandom (uuid.h).
 */
#include "ap/uuid.h"

#include <stdint.h>
#include <sys/random.h>

ap_err_t ap_uuid4_random(char out[AP_EVENT_ID_SIZE])
{
    uint8_t bytes[16];
    if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes)
        return AP_ERR_INTERNAL;
    ap_uuid4_format(bytes, out);
    return AP_OK;
}
