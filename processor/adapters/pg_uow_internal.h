/*
 * pg_uow_internal.h - what the files of the PostgreSQL unit of work share, the way git's
 * refs-internal.h serves its backends:
 *
 *   pg_uow.c         the port: sessions, scopes, the repository, the read model and offsets
 *   pg_repository.c  loading products, and the lines a command needs
 *   pg_statements.c  the SQL it prepares on every connection
 *   pg_pipeline.c    libpq pipelines, the queue of statements not sent yet (lazy savepoints,
 *                    deferred writes) and the merging of queued writes into many-row ones
 *
 * Private to those files: nothing else includes it. The helpers every pg adapter uses
 * (connecting, mapping errors, array literals) are in pg_internal.h. One uow, one thread.
 */
#ifndef AP_ADAPTERS_PG_UOW_INTERNAL_H
#define AP_ADAPTERS_PG_UOW_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "adapters/pg_internal.h"
#include "ap/ports.h"

/* ---------------------------------------------------------------- the uow */

/*
 * Savepoint statements not sent yet. The scope functions queue them and the next statement
 * that goes to the server sends them first, in the same pipeline. The queue always reads
 * "RELEASE ..., then SAVEPOINT ..." and its SAVEPOINTs are exactly the open scopes the
 * server has not heard of, which is what lets a commit or rollback of such a scope just
 * drop its SAVEPOINT from the queue.
 */
#define MAX_PENDING 1024
#define MAX_NAMED 8
#define MAX_WAKE 4

typedef struct pending pending_t;

typedef struct pg_uow {
    ap_uow_t uow;   /* first: the port (container_of) */
    PGconn *conn;   /* NULL while disconnected */
    char *conninfo; /* kept for reconnecting; never logged */
    bool prepared;  /* the statements below exist on `conn` */
    bool broken;    /* the session is in doubt: drop it at the next outermost begin */
    bool begin_pending; /* the outermost BEGIN, not sent yet: it leads the next round trip */
    pending_t *pending; /* statements not sent yet, in order */
    size_t npending, pending_cap;
    /* Other adapters' statements (ap_pg_uow_command), prepared on first use; known by the
     * address of their text, which is a constant of theirs. */
    struct {
        const char *sql;
        bool prepared; /* on `conn` */
    } named[MAX_NAMED];
    size_t nnamed;
    /* The channels to NOTIFY once the transaction commits (ap_pg_uow_notify_on_commit);
     * each a constant of the caller's. Emptied by every outermost begin. */
    const char *wake[MAX_WAKE];
    size_t nwake;
} pg_uow_t;

enum stmt {
    ST_LOAD_SKU,
    ST_LOAD_REF,
    ST_LOAD_MANY,
    ST_LOAD_ORDERS,
    ST_LOAD_OLDER,
    ST_PRODUCT_INSERT,
    ST_PRODUCT_CAS,
    ST_BATCH_INSERT,
    ST_BATCH_SET_QTY,
    ST_LINE_ADD,
    ST_LINE_REMOVE,
    ST_VIEW_ADD,
    ST_VIEW_REMOVE,
    ST_CLAIM,
    ST_ADVANCE,
    /* The deferred writes of a batch, many rows per statement (send_writes). */
    ST_PRODUCT_INSERT_MANY,
    ST_PRODUCT_CAS_MANY,
    ST_LINE_ADD_MANY,
    ST_VIEW_ADD_MANY,
    ST__COUNT
};

/* The statements prepared on every connection, by enum stmt (pg_statements.c). */
typedef struct pg_stmt {
    const char *name;
    const char *sql;
} pg_stmt_t;
extern const pg_stmt_t pg_stmts[ST__COUNT];

/* Remembers that the session is in doubt after a failure that may have lost it (a lost
 * connection, or an error on one that is no longer CONNECTION_OK); returns `err`. */
ap_err_t pg_uow_check_lost(pg_uow_t *self, ap_err_t err);

/* AP_OK when statements may be sent: AP_ERR_CONFLICT in a doomed transaction,
 * AP_ERR_UNAVAILABLE without a healthy session. */
ap_err_t pg_uow_ready(const pg_uow_t *self);

/*
 * The name `sql` is prepared under on this connection, preparing it on first use; false
 * (and the statement goes unnamed) when it cannot be: too many, or the server refused.
 * Only outside pipeline mode.
 */
bool pg_uow_named_statement(pg_uow_t *self, const char *sql, char name[16]);

/* Runs prepared statement `st` now (after the queue, in one pipeline); on success *out holds
 * a result of status `want` (caller clears). */
ap_err_t pg_uow_execute(pg_uow_t *self, enum stmt st, int nparams, const char *const *params,
                        ExecStatusType want, PGresult **out);

/* `value` in decimal, in `buf`; returns buf. */
const char *pg_uow_fmt_int(char buf[AP_PG_INT_SIZE], int64_t value);

/* Logs a stored row the model refuses (a bug or manual tampering): AP_ERR_INTERNAL. */
ap_err_t pg_uow_bad_row(const char *what, int row);

/* ---------------------------------------------------------------- the repository's loads
 * (pg_repository.c): the port's functions of the same names. */
ap_err_t pg_load(ap_uow_t *uow, const char *sku, ap_product_t **out);
ap_err_t pg_load_by_batchref(ap_uow_t *uow, const char *ref, ap_product_t **out);
ap_err_t pg_load_many(ap_uow_t *uow, const char *const *skus, const int64_t *known, size_t n,
                      int64_t *stored, ap_product_t **out);
ap_err_t pg_load_orders(ap_uow_t *uow, ap_product_t *const *products,
                        const char *const *orderids, size_t n);
ap_err_t pg_load_older_lines(ap_uow_t *uow, ap_product_t *product, size_t batch, size_t max);

/* ---------------------------------------------------------------- pipelines (pg_pipeline.c) */

/*
 * A libpq pipeline: statements are sent without waiting, and a sync collects their results
 * every PIPE_CHUNK statements and at the end, so neither side's buffers fill up. It starts
 * with the pending savepoint statements. The first failure wins and is logged once: later
 * statements are not sent, and on the server an error skips the rest of the chunk. What
 * ran anyway is undone by the rollback that follows a failed call.
 */
#define PIPE_CHUNK 64

typedef enum {
    EXPECT_DONE,    /* only has to succeed (SAVEPOINT, RELEASE) */
    EXPECT_VERSION, /* the version check: one row, else a conflict */
    EXPECT_ONE_ROW, /* a change: one row, else storage and the model disagree */
    EXPECT_KEEP,    /* the caller reads the result: status `want`, kept in `kept` */
    EXPECT_FENCE,   /* a consumer offset's move: one row, else AP_ERR_FENCED */
} expect_t;

#define MAX_PARAMS 8

/*
 * A statement waiting in the queue: a scope's SAVEPOINT or RELEASE, or (with
 * uow->defer_writes) a write whose result nobody waits for. Everything is owned copies.
 */
struct pending {
    enum { PENDING_SAVEPOINT, PENDING_RELEASE, PENDING_STMT } kind;
    unsigned level; /* savepoints: s<level> */
    enum stmt st;   /* statements: prepared, or ST__COUNT for `sql` */
    char *sql;
    char name[16];  /* `sql` prepared under this name, or "" */
    char many[16];  /* a form of `sql` taking arrays, prepared under this name, or "" */
    expect_t expect;
    char *key; /* for the log */
    int nparams;
    char *params[MAX_PARAMS];
    int lengths[MAX_PARAMS], formats[MAX_PARAMS];
};

typedef struct pipe {
    pg_uow_t *self;
    bool open;          /* in pipeline mode */
    ap_err_t err;       /* the first failure */
    ExecStatusType want;
    PGresult *kept;     /* EXPECT_KEEP's result; the caller clears it */
    size_t nsent;       /* since the last sync */
    bool sending_queue; /* sending the queued statements */
    struct {
        const char *what;      /* for the log: the statement's name */
        char key[AP_STR_SIZE]; /* for the log: the sku or ref it is about, or "" */
        expect_t expect;
        long rows;     /* EXPECT_VERSION, EXPECT_ONE_ROW: rows it must touch */
        bool deferred; /* queued earlier: its failure dooms the whole transaction */
    } sent[PIPE_CHUNK];
} pipe_t;


/* Enters pipeline mode and sends the queued statements first (deferred writes merged). */
void pg_pipe_open(pipe_t *pipe, pg_uow_t *self);

/* Syncs what is left and leaves pipeline mode; returns the first failure. On success with
 * an EXPECT_KEEP statement, pipe->kept holds its result (the caller clears it). */
ap_err_t pg_pipe_close(pipe_t *pipe);

/* Sends prepared statement `st`, which must touch one row (EXPECT_VERSION, EXPECT_ONE_ROW);
 * `key` names it in the log. Does nothing after a failure. */
void pg_pipe_send(pipe_t *pipe, enum stmt st, expect_t expect, const char *key, int nparams,
                  const char *const *params);

/* A statement prepared as `name` (pg_uow_named_statement), with PQexecParams's arguments;
 * it must touch `rows` rows. */
void pg_pipe_send_named(pipe_t *pipe, const char *name, expect_t expect, long rows,
                        int nparams, const char *const *params, const int *lengths,
                        const int *formats);

/* The same for a statement that is not prepared (the unnamed statement). */
void pg_pipe_send_sql(pipe_t *pipe, const char *what, const char *sql, expect_t expect,
                      int nparams, const char *const *params, const int *lengths,
                      const int *formats);

/* ---------------------------------------------------------------- the queue (pg_pipeline.c) */

/* Forgets the queued statements from `at` on. */
void pg_queue_clear(pg_uow_t *self, size_t at);

/* Removes one queued statement, keeping the order of the others. */
void pg_queue_remove(pg_uow_t *self, size_t at);

/* Queues scope `level`'s SAVEPOINT (or, with `release`, its RELEASE). */
ap_err_t pg_queue_savepoint(pg_uow_t *self, bool release, unsigned level);

/* Queues a write to be sent with the next statement that needs an answer (or the commit):
 * prepared `st`, or `sql` (ST__COUNT) with `many_sql` its many-row form (or NULL).
 * Copies everything. */
ap_err_t pg_queue_stmt(pg_uow_t *self, enum stmt st, const char *sql, const char *many_sql,
                       expect_t expect, const char *key, int nparams, const char *const *params,
                       const int *lengths, const int *formats);

/* True when a write was deferred and not sent yet. */
bool pg_queue_has_writes(const pg_uow_t *self);

/* Where scope `level`'s SAVEPOINT waits in the queue, or -1 when the server has it. */
long pg_queue_find_savepoint(const pg_uow_t *self, unsigned level);

/* Sends the queue on its own (it is full, or a commit needs its writes first). */
ap_err_t pg_queue_flush(pg_uow_t *self);

#endif
