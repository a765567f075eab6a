/*
 * outbox.h - the transactional outbox, writing side: events, rejections and dead letters
 * become rows of the `outbox` table inside the unit of work's current scope, so they commit
 * or vanish with the state change and the consumer offset that caused them. The relay
 * (ap/relay.h) delivers them after commit.
 *
 * Errors, for every write here: AP_ERR_NOMEM; AP_ERR_UNAVAILABLE when the uow's connection
 * is lost (the uow reconnects at its next outermost begin: retry the transaction);
 * AP_ERR_CONFLICT when the transaction is doomed (a deferred write failed: retry it whole);
 * AP_ERR_INTERNAL for a refused statement (a missing table, a uow that is not Postgres's);
 * the codec's error for a message it cannot encode. Postgres's are logged once, here. With
 * the uow's deferred writes on, a write may only fail at the next round trip, which then
 * dooms the transaction. One thread: the uow's.
 */
#ifndef AP_OUTBOX_H
#define AP_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ap/avro.h"
#include "ap/error.h"
#include "ap/header.h"
#include "ap/messages.h"
#include "ap/ports.h"

typedef struct ap_outbox ap_outbox_t;

/*
 * An outbox writing through `uow` (a PostgreSQL unit of work, borrowed) and encoding with
 * `codec` (borrowed). Topics are named by ap/topics.h from `topic_prefix`.
 * The outbox is also a publisher port: ap_outbox_publisher gives that view, and freeing the
 * publisher (ap_publisher_free) frees the outbox.
 */
ap_err_t ap_pg_outbox_new(ap_uow_t *uow, ap_avro_codec_t *codec, const char *topic_prefix,
                          ap_outbox_t **out);
ap_publisher_t *ap_outbox_publisher(ap_outbox_t *outbox);

/* A CommandRejected event, keyed by the input's key, with the command's provenance. */
ap_err_t ap_outbox_reject(ap_outbox_t *outbox, const ap_rejection_t *rejection,
                          const ap_msg_meta_t *meta, const void *key, size_t key_len);

/* An input record that could not be decoded, and where it was read. All borrowed. */
typedef struct ap_dead_letter {
    const void *key; /* NULL for a null key */
    size_t key_len;
    const void *value; /* NULL for a null value */
    size_t value_len;
    const ap_header_t *headers;
    size_t nheaders;
    const char *reason; /* one line: why it could not be decoded */
    const char *source_topic;
    int32_t source_partition;
    int64_t source_offset;
} ap_dead_letter_t;

/*
 * Copies undecodable input to the dead-letter topic: key, value and headers unchanged, plus
 * dlq-reason, dlq-source-topic, dlq-source-partition and dlq-source-offset.
 */
ap_err_t ap_outbox_dead_letter(ap_outbox_t *outbox, const ap_dead_letter_t *letter);

/* How far the relay is behind (ap_outbox_backlog). `rows` is the rows waiting when `counted`
 * (up to the limit asked for), else the span of ids from the oldest row to the last id given,
 * which bounds them from above; 0 when there is no row. */
typedef struct ap_outbox_backlog {
    int64_t rows;
    bool counted;
    int64_t oldest_ms; /* the oldest row's age; 0 when there is none */
} ap_outbox_backlog_t;

/*
 * How far the relay is behind, counting only the rows whose id is at least *from_id.
 * *from_id then becomes the oldest such row's id, or the next id the outbox will give when
 * there is none: pass 0 the first time, then what it returned.
 *
 * The cost does not grow with the backlog unless asked to: the oldest row and the last id
 * given are two index probes, and the ids between them bound the rows waiting (a rolled-back
 * transaction's ids, and rows deleted behind a row the relay holds, are in the span but not
 * in the table). Only when that span exceeds `count_above` are the rows counted, up to
 * `limit`, by one range scan from the oldest. The relay deletes from the front, and while a
 * long transaction anywhere in the database holds vacuum back, every deleted row stays in
 * the table and its index: a probe from the front would walk them all (half a second per
 * count at 200,000), one from the last oldest row walks only those deleted since. A row that
 * commits after a later row was seen here, with an id below it, is not seen (the relay still
 * delivers it). Runs on the unit of work's connection; call it between transactions. The
 * errors above.
 */
ap_err_t ap_outbox_backlog(ap_outbox_t *outbox, int64_t count_above, int64_t limit,
                           int64_t *from_id, ap_outbox_backlog_t *out);

/*
 * How many rows this outbox has written since it was made, counting those of transactions
 * rolled back: what the backlog can have grown by since it was last measured, at most.
 */
uint64_t ap_outbox_rows_written(const ap_outbox_t *outbox);

#endif
