/*
 * pg_internal.h - helpers shared by the PostgreSQL adapters (pg_uow.c, pg_outbox.c,
 * pg_outbox_reader.c, pg_views.c, pg_migrate.c): connecting, turning a libpq failure into one
 * log line and an ap_err_t, array literals, and running statements inside a pg uow's scope.
 *
 * Private to processor/adapters/: libpq types never cross a port, so nothing outside the pg
 * adapters includes this. The connection helpers are defined in pg_session.c, the uow ones
 * (ap_pg_uow_command, _insert, _query) in pg_uow.c, the connection of its own in pg_conn.c.
 */
#ifndef AP_ADAPTERS_PG_INTERNAL_H
#define AP_ADAPTERS_PG_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "ap/error.h"
#include "ap/fault.h"
#include "ap/ports.h"

/*
 * Opens a connection, routes the server's notices to the log (debug level) instead of
 * stderr, and returns it; NULL (logged, AP_ERR_UNAVAILABLE territory) when the server cannot
 * be reached or refuses us. `conninfo` is never logged: it may hold a password. Unless
 * `conninfo` says otherwise, the session is named allocation-processor, connecting gives up
 * after 10 s, and TCP keepalives plus tcp_user_timeout (60 s) notice a silent server. Caller
 * closes with PQfinish.
 */
PGconn *ap_pg_connect(const char *conninfo);

/*
 * Maps a failed command to an error and logs libpq's text once, prefixed with `what`.
 * `res` may be NULL (libpq could not even produce a result: out of memory or a dead
 * connection). Serialization failures, deadlocks and unique violations give
 * AP_ERR_CONFLICT; a lost connection (any 08 SQLSTATE, an administrator's shutdown or a
 * connection that is no longer CONNECTION_OK), a read-only server (25006), a connection
 * limit (53300) or exhausted resources (53) give AP_ERR_UNAVAILABLE, and set the thread's
 * fault (ap_pg_thread_fault); anything else AP_ERR_INTERNAL. The same failure met again
 * within a minute on the same thread is logged at debug level. Does not clear `res`.
 */
ap_err_t ap_pg_fail(PGconn *conn, const PGresult *res, const char *what);

/* Sets the calling thread's fault (ap_pg_thread_fault) for a failure found without a
 * failed command, such as a session found read-only. */
void ap_pg_note_fault(ap_fault_t fault);

/* True when the session cannot write: default_transaction_read_only is on, or the server
 * is a standby, as the server last reported (no round trip). */
bool ap_pg_read_only(const PGconn *conn);

/*
 * Runs a parameterless command (simple query protocol, several statements allowed) and
 * checks it ended in PGRES_COMMAND_OK or PGRES_TUPLES_OK; logs and maps any failure.
 */
ap_err_t ap_pg_exec(PGconn *conn, const char *sql, const char *what);

/*
 * For other pg adapters that write inside a pg uow's current scope (a transactional outbox):
 * runs one parameterised command on the uow's connection, after the savepoint statements
 * the uow deferred, in the same round trip. Never use the uow's connection directly: its
 * latest savepoint may not exist on the server yet. `lengths` and `formats` are
 * PQexecParams's (NULL: every parameter is NUL-terminated text; format 1 = binary, e.g. a
 * bytea). `rows` (if not NULL) receives the number of rows touched. Errors are mapped and
 * logged like the uow's own; a lost connection marks the uow for reconnecting.
 * AP_ERR_INTERNAL when `uow` is not a pg uow. Same thread as the uow.
 */
ap_err_t ap_pg_uow_command(ap_uow_t *uow, const char *sql, int nparams, const char *const *params,
                           const int *lengths, const int *formats, long *rows);

/*
 * Like ap_pg_uow_command without a row count, for an INSERT of one row that `many_sql`
 * (a constant of the caller's, like `sql`) can do for many: it takes each of the same
 * parameters as an array (a binary parameter must be a bytea) and inserts in array order.
 * Deferred inserts of the same statement that follow each other are sent as one many_sql.
 */
ap_err_t ap_pg_uow_insert(ap_uow_t *uow, const char *sql, const char *many_sql, int nparams,
                          const char *const *params, const int *lengths, const int *formats);

/* The LISTEN/NOTIFY channels: rows in the table of the same name wait for their reader. */
#define AP_PG_CHANNEL_OUTBOX "outbox"
#define AP_PG_CHANNEL_OUTCOMES "command_outcomes"
#define AP_PG_CHANNEL_EMAIL "email_outbox"

/*
 * Wakes the sessions that LISTEN on `channel` (a constant of the caller's, a plain SQL
 * identifier) once the uow's current transaction has committed; nothing when it rolls back.
 *
 * Why not NOTIFY inside the transaction, as the tables' triggers do for other writers: a
 * transaction that issued NOTIFY holds PostgreSQL's notify-queue lock (one per database)
 * from its commit's start to its end, WAL flush included, so every such commit in the
 * database waits for the one before it and none share a flush. The uow's session sets
 * `allocation.wake_after_commit`, which the triggers (007_wake_after_commit.sql) read to
 * stay quiet; its commit then sends the NOTIFYs in a transaction of their own, with
 * synchronous_commit off, in the same round trip as the COMMIT and only after it succeeded.
 * A crash between the two loses a wake-up, never a row: every listener also polls.
 */
void ap_pg_uow_notify_on_commit(ap_uow_t *uow, const char *channel);

/* Like ap_pg_uow_command for a query: *out receives its rows (caller clears it). */
ap_err_t ap_pg_uow_query(ap_uow_t *uow, const char *sql, int nparams, const char *const *params,
                         PGresult **out);

/* A text[] literal of `items` ("{\"a\",NULL}"), quoting and escaping each; NULL items are
 * SQL NULLs. malloc'd (NULL when out of memory). */
char *ap_pg_text_array(const char *const *items, size_t n);
/* bytea's hex text form ("\\x6869") of `len` bytes; NULL for a NULL value or out of memory.
 * malloc'd. */
char *ap_pg_bytea_hex(const void *value, size_t len);

/* Element types of the binary arrays below (their OIDs in pg_type, fixed since forever). */
#define AP_PG_TEXT_OID 25u
#define AP_PG_BYTEA_OID 17u

/*
 * A one-dimensional array in PostgreSQL's binary format (array_send's: header, then each
 * element's length and bytes), for a parameter sent with format 1: the server reads it
 * without parsing a literal. `elem_oid` must be the parameter's element type (text for a
 * $1::text[]). Element i is `items[i]`, `lengths[i]` bytes long (or up to its NUL when
 * `lengths` is NULL); a NULL item is an SQL NULL. *len receives the size. malloc'd (NULL
 * when out of memory or larger than a parameter can be).
 */
char *ap_pg_binary_array(unsigned elem_oid, const char *const *items, const int *lengths,
                         size_t n, int *len);

/* An int8[] literal ("{1,-1}"). malloc'd (NULL when out of memory). */
char *ap_pg_int_array(const int64_t *items, size_t n);

/* Text for a 64-bit integer query parameter: "-9223372036854775808" fits. */
#define AP_PG_INT_SIZE 24

/* Parses a bigint column's text; false when it is not one. */
bool ap_pg_get_int64(const PGresult *res, int row, int col, int64_t *out);

/*
 * A connection of its own that reconnects on demand (pg_conn.c): the outbox relay's, the
 * email queue's (both LISTEN between statements), the views' and the command-outcome
 * lookups', never a unit of work's. A failure it cannot trust closes it; the next
 * ap_pg_conn_open connects again. Caller's storage; one thread at a time.
 */
typedef struct ap_pg_conn {
    char *conninfo; /* never logged */
    PGconn *conn;   /* NULL while disconnected */
} ap_pg_conn_t;

/* A statement to prepare on every new connection; a table of them ends with {NULL, NULL}. */
typedef struct ap_pg_prepared {
    const char *name, *sql;
} ap_pg_prepared_t;

/*
 * Every statement the adapters prepare beside the unit of work's own (pg_stmts): on a
 * session of their own (the relay's, the email sender's) or on the unit of work's, which
 * prepares the SQL it is given under names of its own and, with plan_cache_mode set to
 * force_generic_plan, runs it on its generic plan from the first call. test_plans checks all
 * of them; a statement added to an adapter belongs in its table.
 */
extern const ap_pg_prepared_t ap_pg_outbox_statements[];        /* pg_outbox.c */
extern const ap_pg_prepared_t ap_pg_outbox_reader_statements[]; /* pg_outbox_reader.c */
extern const ap_pg_prepared_t ap_pg_email_outbox_statements[];  /* pg_email_outbox.c */
extern const ap_pg_prepared_t ap_pg_email_queue_statements[];   /* pg_email_outbox.c */
extern const ap_pg_prepared_t ap_pg_outcome_statements[];       /* pg_command_outcomes.c */

/* What a new connection runs before use: `commands` (NULL-terminated, may be NULL: SET,
 * LISTEN...), then `prepared` (may be NULL). `what` names the connection in the log. */
typedef struct ap_pg_conn_setup {
    const char *what;
    const char *const *commands;
    const ap_pg_prepared_t *prepared;
} ap_pg_conn_setup_t;

/* Copies `conninfo`; no I/O yet. AP_ERR_NOMEM. Release with ap_pg_conn_release. */
ap_err_t ap_pg_conn_init(ap_pg_conn_t *pc, const char *conninfo);
void ap_pg_conn_release(ap_pg_conn_t *pc);

bool ap_pg_conn_connected(const ap_pg_conn_t *pc);

/* AP_OK at once when connected; otherwise connects (closing a stale connection) and runs
 * `setup` (may be NULL). AP_ERR_UNAVAILABLE (logged) when the server cannot be reached; a
 * setup failure as ap_pg_conn_fail, leaving the connection closed. */
ap_err_t ap_pg_conn_open(ap_pg_conn_t *pc, const ap_pg_conn_setup_t *setup);
void ap_pg_conn_close(ap_pg_conn_t *pc);

/* ap_pg_fail, then closes a session that was lost or can no longer be trusted. A conflict
 * is a bug on a session that runs no concurrent writes: AP_ERR_INTERNAL. */
ap_err_t ap_pg_conn_fail(ap_pg_conn_t *pc, const PGresult *res, const char *what);

/* Prepares statement `name`; failures as ap_pg_conn_fail. */
ap_err_t ap_pg_conn_prepare(ap_pg_conn_t *pc, const char *name, const char *sql);

/* ap_pg_exec, closing a session that is lost. */
ap_err_t ap_pg_conn_exec(ap_pg_conn_t *pc, const char *sql, const char *what);

/*
 * Waits up to timeout_ms for a notification (one already read counts; all read are consumed).
 * `notified` (may be NULL) says whether one came; AP_OK after a timeout too.
 * AP_ERR_UNAVAILABLE (logged as `what`) when the session is lost, which closes it.
 */
ap_err_t ap_pg_conn_wait(ap_pg_conn_t *pc, int timeout_ms, const char *what,
                             bool *notified);

#endif
