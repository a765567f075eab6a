/*
 * outcomes.h - what became of each command that carried a message id (the HTTP API's
 * Idempotency-Key, or any sender's `message-id` header): the table command_outcomes.
 *
 * Written by the consumer inside the batch's transaction, with the command's effects and
 * offset, so an outcome exists exactly when the command was applied (or refused); read by
 * the HTTP side of any replica, which waits for it after producing a command. A command
 * whose message id already has an outcome is skipped by the consumer: one message id is
 * applied at most once, from HTTP or kcat alike.
 */
#ifndef AP_OUTCOMES_H
#define AP_OUTCOMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ap/config.h"
#include "ap/error.h"
#include "ap/fault.h"
#include "ap/messages.h"
#include "ap/ports.h"

typedef enum {
    AP_OUTCOME_APPLIED,
    AP_OUTCOME_REJECTED,      /* the domain refused it: a CommandRejected event */
    AP_OUTCOME_DEAD_LETTERED, /* undecodable: copied to the dead-letter topic */
    AP_OUTCOME_FAILED,        /* failed for a reason no retry fixes: dead-lettered too */
} ap_outcome_kind_t;

/* "applied", "rejected", "dead_lettered", "failed": the table's and the metrics' words. */
const char *ap_outcome_kind_name(ap_outcome_kind_t kind);

typedef struct ap_command_outcome {
    char message_id[AP_STR_SIZE];
    char command_type[32]; /* "Allocate", ...; "" when the input was undecodable */
    ap_outcome_kind_t kind;
    char reason[32];       /* a rejection's reason ("invalid_sku"), else "" */
    char message[512];     /* the human text of a refusal or failure, else "" */
    char batchref[AP_STR_SIZE]; /* an applied Allocate's batch; "" when none */
    bool out_of_stock;     /* an applied Allocate that found no batch (OutOfStock) */
} ap_command_outcome_t;

/* ---------------------------------------------------------------- writing (the consumer) */

/*
 * Sets seen[i] for each of the `n` message ids that already has an outcome. Runs inside the
 * PostgreSQL unit of work's current transaction (on its thread).
 */
ap_err_t ap_outcomes_seen(ap_uow_t *uow, const char *const *ids, size_t n, bool *seen);

/*
 * Inserts `n` outcomes in one statement inside the unit of work's current transaction. An id
 * that has an outcome already makes it fail with AP_ERR_CONFLICT: one recorded meanwhile by
 * another consumer (the same key sent under two skus), or before, when the caller did not ask
 * ap_outcomes_seen first. The caller retries its batch, asking, and then skips that command.
 */
ap_err_t ap_outcomes_record(ap_uow_t *uow, const ap_command_outcome_t *outcomes, size_t n);

/* ---------------------------------------------------------------- reading (HTTP) */

/*
 * The HTTP side's view of the table, on two connections of its own: one for lookups (shared
 * by the request threads, one at a time) and one that LISTENs for "command_outcomes" on a
 * thread of its own, answers every waiting request with one query per notification, and
 * deletes outcomes older than `retention_hours` about once a minute. All functions are
 * thread-safe.
 */
typedef struct ap_outcome_store ap_outcome_store_t;

/* Starts the listener thread (which connects, and reconnects, on its own) on
 * cfg->database_url, keeping outcomes cfg->command_outcome_retention_hours. `cfg` is
 * borrowed until the store is freed. Caller frees. NULL on failure, with `err` set. */
ap_outcome_store_t *ap_pg_outcome_store_new(const ap_config_t *cfg, ap_err_t *err);

/* The outcome of one message id: AP_OK, AP_ERR_NOT_FOUND, or AP_ERR_UNAVAILABLE. */
ap_err_t ap_outcome_store_get(ap_outcome_store_t *store, const char *message_id,
                              ap_command_outcome_t *out);

/*
 * Waits until the outcome of `message_id` is recorded or `timeout_ms` passed: AP_OK with
 * `out` filled, or AP_ERR_NOT_FOUND when time ran out (checked against the table once more
 * at the end, so a missed notification costs latency, never an answer).
 */
ap_err_t ap_outcome_store_wait(ap_outcome_store_t *store, const char *message_id,
                               int64_t timeout_ms, ap_command_outcome_t *out);

/*
 * Asks Postgres for `SELECT 1` (at most once a second; the last answer otherwise): AP_OK, or
 * AP_ERR_UNAVAILABLE with what is wrong in `fault` (may be NULL) when Postgres is away,
 * refuses a session, or can take no writes (read-only). For the readiness probe.
 */
ap_err_t ap_outcome_store_ping(ap_outcome_store_t *store, ap_fault_t *fault);

/* Stops the listener, closes both connections. NULL is a no-op. */
void ap_outcome_store_free(ap_outcome_store_t *store);

#endif
