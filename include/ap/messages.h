/*
 * messages.h - commands (what we are asked to do) and events (what happened).
 *
 * A message is a fixed-size value: it copies with `=`, never allocates, and its strings are
 * bounded by AP_STR_MAX bytes (the contract's limit), NUL-terminated. One flat record serves
 * every type; the table below says which fields a type uses, the others stay zero.
 *
 *   type                         ref  sku  orderid  batchref  qty  eta
 *   AP_CMD_CREATE_BATCH           x    x                       x    (x)
 *   AP_CMD_ALLOCATE                    x     x                 x
 *   AP_CMD_CHANGE_BATCH_QUANTITY  x                            x
 *   AP_EVT_BATCH_CREATED          x    x                       x    (x)
 *   AP_EVT_BATCH_QUANTITY_CHANGED x    x                       x
 *   AP_EVT_ALLOCATED                   x     x        x        x
 *   AP_EVT_DEALLOCATED                 x     x        x        x
 *   AP_EVT_OUT_OF_STOCK                x
 *
 * Every message also carries `meta`, its provenance (below).
 *
 * Dates are days since 1970-01-01 (the Avro `date` logical type); `has_eta` false means the
 * batch is already in the warehouse. This module is pure: no I/O, no allocation.
 */
#ifndef AP_MESSAGES_H
#define AP_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ap/error.h"

#define AP_STR_MAX 255
#define AP_STR_SIZE (AP_STR_MAX + 1)
#define AP_DATE_LEN 10 /* "YYYY-MM-DD" */

typedef enum {
    AP_MSG_NONE = 0,
    AP_CMD_CREATE_BATCH,
    AP_CMD_ALLOCATE,
    AP_CMD_CHANGE_BATCH_QUANTITY,
    AP_EVT_BATCH_CREATED,
    AP_EVT_BATCH_QUANTITY_CHANGED,
    AP_EVT_ALLOCATED,
    AP_EVT_DEALLOCATED,
    AP_EVT_OUT_OF_STOCK,
    AP_MSG__COUNT
} ap_msg_type_t;

/*
 * Where a message came from, carried from a command to every event it causes (the Kafka
 * headers of docs/topics.md). The domain never reads or writes it; the bus copies a command's
 * metadata onto the events it collects.
 */
#define AP_TRACEPARENT_SIZE 128
#define AP_EVENT_ID_SIZE 37 /* a UUID's text and its NUL */
typedef struct ap_msg_meta {
    char message_id[AP_STR_SIZE];     /* the sender's id, if it gave one */
    char correlation_id[AP_STR_SIZE]; /* from the command, or generated */
    char causation_id[AP_STR_SIZE];   /* the command's message-id, or topic/partition/offset */
    char traceparent[AP_TRACEPARENT_SIZE];
    /* An event's own id, a UUIDv4 the bus gives it as it is collected (empty for a command):
     * the outbox row's event-id header and the out-of-stock email's Message-ID both come
     * from it, so a re-delivery of either repeats it. */
    char event_id[AP_EVENT_ID_SIZE];
} ap_msg_meta_t;

typedef struct ap_msg {
    ap_msg_type_t type;
    ap_msg_meta_t meta;
    char ref[AP_STR_SIZE];
    char sku[AP_STR_SIZE];
    char orderid[AP_STR_SIZE];
    char batchref[AP_STR_SIZE];
    int64_t qty;
    bool has_eta;
    int32_t eta;
} ap_msg_t;

/* "CreateBatch", "Allocated", ...; "?" for an unknown type. */
const char *ap_msg_type_name(ap_msg_type_t type);

/* Parses a type name, CamelCase or snake_case ("ChangeBatchQuantity",
 * "change_batch_quantity"); AP_MSG_NONE when unknown. `len` bytes of `name` are read. */
ap_msg_type_t ap_msg_type_parse(const char *name, size_t len);

bool ap_msg_is_command(ap_msg_type_t type);
bool ap_msg_is_event(ap_msg_type_t type);

/*
 * The processing outcome "a command that was refused" (docs/guarantees.md): published as a
 * CommandRejected event, never retried. Fixed-size, so it copies without allocating.
 */
typedef struct ap_rejection {
    ap_msg_type_t command_type; /* AP_MSG_NONE when unknown */
    char reason[32];            /* invalid_command, invalid_sku, unknown_batch, batch_exists */
    char message[512];
    char source_topic[256];
    int32_t source_partition;
    int64_t source_offset;
} ap_rejection_t;

/*
 * Copies `len` bytes of `src` into a message field of AP_STR_SIZE bytes. Returns false, and
 * leaves `dst` empty, when the text is longer than AP_STR_MAX or contains a NUL byte.
 */
bool ap_str_set(char dst[AP_STR_SIZE], const char *src, size_t len);

/* Convenience constructors. Strings longer than AP_STR_MAX give AP_ERR_INVALID_COMMAND. */
ap_err_t ap_msg_create_batch(ap_msg_t *msg, const char *ref, const char *sku, int64_t qty,
                             bool has_eta, int32_t eta);
ap_err_t ap_msg_allocate(ap_msg_t *msg, const char *orderid, const char *sku, int64_t qty);
ap_err_t ap_msg_change_batch_quantity(ap_msg_t *msg, const char *ref, int64_t qty);

/*
 * Checks a command against the domain's validation rules (docs/domain.md): a missing or empty
 * field, qty <= 0 for Allocate, qty < 0 for the batch commands. On failure returns
 * AP_ERR_INVALID_COMMAND and writes a one-line reason into `why` (if not NULL).
 */
ap_err_t ap_command_validate(const ap_msg_t *msg, char *why, size_t whylen);

/* Strict "YYYY-MM-DD" (a real calendar date, years 0001-9999) -> days since 1970-01-01. */
bool ap_date_parse(const char *text, size_t len, int32_t *days);

/* days since 1970-01-01 -> "YYYY-MM-DD" plus NUL. */
void ap_date_format(int32_t days, char out[AP_DATE_LEN + 1]);

/* Formats 16 random bytes as a version-4 UUID (the version and variant bits are set here). */
void ap_uuid4_format(const uint8_t bytes[16], char out[AP_EVENT_ID_SIZE]);

#endif
