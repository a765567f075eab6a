/*
 * uuid.h - fresh version-4 UUIDs from the kernel's generator, for ids that must not repeat
 * across processes: a command's message-id, an outbox row that is no domain event.
 * (Events get theirs from the bus through the clock port; both use ap_uuid4_format.)
 */
#ifndef AP_UUID_H
#define AP_UUID_H

#include "ap/error.h"
#include "ap/messages.h"

/* Writes a new UUIDv4 to `out`. AP_ERR_INTERNAL when the kernel gives no random bytes. */
ap_err_t ap_uuid4_random(char out[AP_EVENT_ID_SIZE]);

#endif
