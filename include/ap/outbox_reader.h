/*
 * outbox_reader.h - the outbox's reading side on PostgreSQL, as the relay needs it: one
 * session that competes for the relay lock (a session-level advisory lock, so it is released
 * when the session ends, however it ends), listens on channel "outbox", reads the oldest rows
 * in id order and deletes the ones Kafka acknowledged.
 *
 * Not the writing side (outbox.h) and not the relay loop (ap/relay.h). Rows come back
 * byte-exact: keys, values and header values are bytea read in binary, NULL stays NULL. One
 * object owns one connection and belongs to one thread; conninfo is never logged.
 */
#ifndef AP_OUTBOX_READER_H
#define AP_OUTBOX_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ap/error.h"
#include "ap/kafka_producer.h"

typedef struct ap_outbox_reader ap_outbox_reader_t;

/* One row, borrowed until the next fetch or free. */
typedef struct ap_outbox_row {
    int64_t id;
    const char *event_id; /* the uuid as text */
    const char *topic;
    const void *key; /* NULL when the column is NULL */
    size_t key_len;
    const void *value; /* NULL when the column is NULL */
    size_t value_len;
    const ap_header_t *headers; /* header_names/header_values, in order */
    size_t nheaders;
    int64_t created_ms; /* when it was written (wall clock, ms since the epoch) */
} ap_outbox_row_t;

/* Creates the reader; no I/O yet. NULL when out of memory. Caller frees. */
ap_outbox_reader_t *ap_pg_outbox_reader_new(const char *conninfo);

/* Connects when not connected (a lost session is closed first) and prepares the statements.
 * AP_ERR_UNAVAILABLE (logged) when the server cannot be reached. */
ap_err_t ap_outbox_reader_connect(ap_outbox_reader_t *reader);

/* True while the session is believed alive. */
bool ap_outbox_reader_connected(ap_outbox_reader_t *reader);

/*
 * Tries to take the relay lock without waiting; on success also LISTENs on "outbox".
 * `leader` is true when this session now holds the lock. A failure (logged) means the
 * session is lost: the lock, if it was held, is gone with it.
 */
ap_err_t ap_outbox_reader_try_lock(ap_outbox_reader_t *reader, bool *leader);

/*
 * Reads up to `limit` of the oldest rows, in id order, into `rows` (borrowed until the next
 * fetch or free; the previous fetch's rows are released). AP_ERR_UNAVAILABLE on a lost
 * session, AP_ERR_DECODE (logged) when an array column is malformed.
 */
ap_err_t ap_outbox_reader_fetch(ap_outbox_reader_t *reader, size_t limit,
                                const ap_outbox_row_t **rows, size_t *nrows);

/* Deletes the rows with these ids (absent ones are ignored); `deleted` may be NULL. */
ap_err_t ap_outbox_reader_delete(ap_outbox_reader_t *reader, const int64_t *ids, size_t nids,
                                 size_t *deleted);

/*
 * Vacuums the outbox, so that the rows the relay deleted stop costing every fetch: reading the
 * oldest rows steps over each deleted row's index entry until a vacuum removes it, and
 * autovacuum visits a database at most once a minute (autovacuum_naptime), by which time a
 * busy minute has left a million of them. Never truncates the table (that would lock out the
 * writers) and leaves it alone while another vacuum works on it. `done` is false when the
 * session's role may not vacuum the table (said once). AP_ERR_UNAVAILABLE on a lost session.
 */
ap_err_t ap_outbox_reader_vacuum(ap_outbox_reader_t *reader, bool *done);

/* Moves one row to outbox_parked with Kafka's `reason` (a row that is not there is fine). */
ap_err_t ap_outbox_reader_park(ap_outbox_reader_t *reader, int64_t id, const char *reason);

/*
 * Waits up to timeout_ms for a notification on "outbox" (one already received counts, and
 * all received ones are consumed). `notified` says whether one came; AP_OK after a timeout
 * too. AP_ERR_UNAVAILABLE when the session is lost.
 */
ap_err_t ap_outbox_reader_wait(ap_outbox_reader_t *reader, int timeout_ms, bool *notified);

/* Closes the session, which releases the lock. The next connect opens a new one. */
void ap_outbox_reader_disconnect(ap_outbox_reader_t *reader);

/* Disconnects and frees. NULL is a no-op. */
void ap_outbox_reader_free(ap_outbox_reader_t *reader);

#endif
