/*
 * header.h - one Kafka record header, the one shape every layer passes: what the consumer
 * reads off a record, what the outbox stores beside a row, what the relay hands the producer.
 *
 * A view, never an owner: the bytes belong to whoever filled it (a record, a row, a literal).
 */
#ifndef AP_HEADER_H
#define AP_HEADER_H

#include <stddef.h>
#include <string.h>

typedef struct ap_header {
    const char *name; /* name_len bytes, not necessarily NUL-terminated */
    size_t name_len;
    const void *value; /* NULL for a null header (not the same as an empty one) */
    size_t value_len;
} ap_header_t;

/* A header whose name is a C string: AP_HEADER("event-type", type, strlen(type)). */
#define AP_HEADER(name, value, value_len) \
    ((ap_header_t){(name), strlen(name), (value), (value_len)})

#endif
