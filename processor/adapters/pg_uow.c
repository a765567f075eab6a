/*
 * pg_uow.c - the unit of work on PostgreSQL: transactions and savepoints, the Product
 * repository, and the writes that must commit with the effects they belong to (the
 * allocations_view read model and the consumer offsets).
 *
 * The dispatchers in service/uow.c keep the scope depth and the products handed out; this
 * file only turns those into SQL. It is not the domain: it never decides anything about a
 * product, it replays the changes the product recorded (model.h) and guards each write with
 * a compare-and-set of the stored version. Concurrency is optimistic: loads take no locks,
 * and a transaction that loaded a version someone else has since replaced gets
 * AP_ERR_CONFLICT on commit (READ COMMITTED re-checks the WHERE clause against the newest
 * row, so the stale UPDATE matches nothing).
 *
 * One connection per uow, one thread. Round trips are what a command costs, so: every
 * statement is prepared once per connection; a commit sends all its writes (and, deferred,
 * the consumer offsets' moves) in one libpq pipeline; the outermost BEGIN and the savepoints
 * are sent lazily, riding in the pipeline of the next statement that needs the server (a
 * scope that touched nothing costs nothing); and the wake-ups of the listeners follow the
 * COMMIT in its own round trip (ap_pg_uow_notify_on_commit). A failure that leaves the
 * session in doubt marks it broken; the next outermost begin reconnects.
 *
 * The repository's loads are in pg_repository.c, the SQL in pg_statements.c, the pipelines and the queue of statements not sent yet in
 * pg_pipeline.c (pg_uow_internal.h is what they share); the connection helpers every pg
 * adapter uses in pg_session.c.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "adapters/pg_uow_internal.h"
#include "ap/log.h"
#include "ap/pg.h"
#include "ap/strbuf.h"

/* ---------------------------------------------------------------- session state */

const char *pg_uow_fmt_int(char buf[AP_PG_INT_SIZE], int64_t value)
{
    snprintf(buf, AP_PG_INT_SIZE, "%" PRId64, value);
    return buf;
}

ap_err_t pg_uow_check_lost(pg_uow_t *self, ap_err_t err)
{
    if (err == AP_ERR_UNAVAILABLE || !self->conn || PQstatus(self->conn) != CONNECTION_OK)
        self->broken = true;
    return err;
}

ap_err_t pg_uow_ready(const pg_uow_t *self)
{
    if (self->uow.doomed)
        return AP_ERR_CONFLICT;
    return self->conn && !self->broken ? AP_OK : AP_ERR_UNAVAILABLE;
}

bool pg_uow_named_statement(pg_uow_t *self, const char *sql, char name[16])
{
    size_t i = 0;
    while (i < self->nnamed && self->named[i].sql != sql)
        i++;
    if (i == self->nnamed) {
        if (i == MAX_NAMED)
            return false;
        self->named[self->nnamed++].sql = sql;
        self->named[i].prepared = false;
    }
    snprintf(name, 16, "ap_cmd_%zu", i);
    if (!self->named[i].prepared) {
        PGresult *res = PQprepare(self->conn, name, sql, 0, NULL);
        self->named[i].prepared = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!self->named[i].prepared)
            AP_DEBUG("pg", "prepare %s: %s", name, PQresultErrorMessage(res));
        PQclear(res);
    }
    return self->named[i].prepared;
}

/* ---------------------------------------------------------------- running statements */

/* A statement to run: prepared (`st`), or `sql` with PQexecParams's arguments. */
typedef struct stmt_call {
    enum stmt st; /* ST__COUNT: `sql` */
    const char *sql;
    int nparams;
    const char *const *params;
    const int *lengths, *formats;
} stmt_call_t;

static ap_err_t reconnect(pg_uow_t *self);

/*
 * Runs `call` in a pipeline, after the outermost BEGIN not sent yet and the queue. Another
 * adapter's statement is prepared here only while the session is outside a transaction (the
 * BEGIN not sent yet, as for the consumer's idempotency check, the first statement of every
 * batch): preparing inside one could fail ahead of the savepoint that should have contained
 * the failure. Not prepared yet inside a transaction, it goes unnamed.
 */
static ap_err_t execute_piped(pg_uow_t *self, const stmt_call_t *call, ExecStatusType want,
                              PGresult **out)
{
    char name[16];
    bool named = call->st == ST__COUNT && PQtransactionStatus(self->conn) == PQTRANS_IDLE &&
                 pg_uow_named_statement(self, call->sql, name);
    pipe_t pipe;
    pg_pipe_open(&pipe, self);
    pipe.want = want;
    if (call->st != ST__COUNT)
        pg_pipe_send(&pipe, call->st, EXPECT_KEEP, NULL, call->nparams, call->params);
    else if (named)
        pg_pipe_send_named(&pipe, name, EXPECT_KEEP, 1, call->nparams, call->params,
                           call->lengths, call->formats);
    else
        pg_pipe_send_sql(&pipe, "command", call->sql, EXPECT_KEEP, call->nparams, call->params,
                         call->lengths, call->formats);
    ap_err_t err = pg_pipe_close(&pipe);
    if (err)
        return err;
    assert(pipe.kept);
    *out = pipe.kept;
    return AP_OK;
}

/*
 * Runs a statement; on success *out holds the result (caller clears). The transaction's
 * BEGIN and any queued statements go first, in a pipeline: still one round trip. When that
 * round trip was the transaction's first and found the connection gone (dropped while idle:
 * a restart, a failover, an idle timeout), nothing of the transaction had reached the
 * server, so it is tried once more on a new connection.
 */
static ap_err_t execute_now(pg_uow_t *self, const stmt_call_t *call, ExecStatusType want,
                            PGresult **out)
{
    enum stmt st = call->st;
    const char *what = st == ST__COUNT ? "command" : pg_stmts[st].name;
    char name[16];
    PGresult *res;
    ap_err_t err = pg_uow_ready(self);

    if (err)
        return err;
    if (self->begin_pending || self->npending > 0) {
        bool first = self->begin_pending && self->npending == 0;
        err = execute_piped(self, call, want, out);
        if (err != AP_ERR_UNAVAILABLE || !first)
            return err;
        AP_INFO("pg", "the session was gone before the transaction began; reconnecting");
        if ((err = reconnect(self)))
            return err;
        self->begin_pending = true;
        return execute_piped(self, call, want, out);
    }
    if (st == ST__COUNT && pg_uow_named_statement(self, call->sql, name))
        res = PQexecPrepared(self->conn, name, call->nparams, call->params, call->lengths,
                             call->formats, 0);
    else if (st == ST__COUNT)
        res = PQexecParams(self->conn, call->sql, call->nparams, NULL, call->params,
                           call->lengths, call->formats, 0);
    else
        res = PQexecPrepared(self->conn, pg_stmts[st].name, call->nparams, call->params, NULL,
                             NULL, 0);
    if (PQresultStatus(res) != want) {
        err = pg_uow_check_lost(self, ap_pg_fail(self->conn, res, what));
        PQclear(res);
        return err;
    }
    *out = res;
    return AP_OK;
}

ap_err_t pg_uow_execute(pg_uow_t *self, enum stmt st, int nparams, const char *const *params,
                        ExecStatusType want, PGresult **out)
{
    const stmt_call_t call = {.st = st, .nparams = nparams, .params = params};
    return execute_now(self, &call, want, out);
}

/* Runs a prepared command now and returns how many rows it touched. */
static ap_err_t execute_counting(pg_uow_t *self, enum stmt st, int nparams,
                                 const char *const *params, long *rows)
{
    PGresult *res = NULL;
    ap_err_t err = pg_uow_execute(self, st, nparams, params, PGRES_COMMAND_OK, &res);
    if (err)
        return err;
    *rows = strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return AP_OK;
}

/* Runs a transaction-control command; the scope functions empty the queue before. */
static ap_err_t execute_control(pg_uow_t *self, const char *sql, const char *what)
{
    assert(self->npending == 0);
    ap_err_t err = pg_uow_ready(self);
    if (err)
        return err;
    return pg_uow_check_lost(self, ap_pg_exec(self->conn, sql, what));
}

/* ---------------------------------------------------------------- sessions and scopes */

static ap_err_t prepare_all(pg_uow_t *self)
{
    ap_err_t err = AP_OK;
    for (int i = 0; i < ST__COUNT && err == AP_OK; i++) {
        PGresult *res = PQprepare(self->conn, pg_stmts[i].name, pg_stmts[i].sql, 0, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            err = pg_uow_check_lost(self, ap_pg_fail(self->conn, res, pg_stmts[i].name));
        PQclear(res);
    }
    self->prepared = err == AP_OK;
    return err;
}

/* A fresh connection, with a fresh set of prepared statements. */
static ap_err_t reconnect(pg_uow_t *self)
{
    if (self->conn) {
        AP_DEBUG("pg", "reconnecting"); /* the failure that led here said why */
        PQfinish(self->conn);
    }
    self->prepared = false;
    self->broken = false;
    self->begin_pending = false;
    for (size_t i = 0; i < self->nnamed; i++)
        self->named[i].prepared = false;
    pg_queue_clear(self, 0);
    self->conn = ap_pg_connect(self->conninfo);
    if (!self->conn)
        return AP_ERR_UNAVAILABLE;
    /* The tables' NOTIFY triggers stay quiet for this session: its commits wake the
     * listeners afterwards (ap_pg_uow_notify_on_commit).
     * Each statement runs on its generic plan from the first call: left to choose, the
     * server replanned the product update (ap_product_cas_many) at every call of a small
     * batch, because a plan for the batch's own few rows is estimated cheaper than one for
     * any count, though both have the same shape (0.2 ms of planning per batch, more than its
     * execution). test_plans checks that no generic plan reads history. */
    ap_err_t err = ap_pg_exec(self->conn,
                              "SET allocation.wake_after_commit = on;"
                              " SET plan_cache_mode = force_generic_plan",
                              "set");
    if (err)
        return pg_uow_check_lost(self, err);
    return prepare_all(self);
}

/* Before an outermost begin: a live, idle session with our statements prepared. */
static ap_err_t ready_session(pg_uow_t *self)
{
    PGconn *conn = self->conn;
    bool healthy = conn && !self->broken && PQstatus(conn) == CONNECTION_OK &&
                   PQpipelineStatus(conn) == PQ_PIPELINE_OFF;

    pg_queue_clear(self, 0);
    if (healthy && PQtransactionStatus(conn) != PQTRANS_IDLE) {
        /* A transaction a failed rollback left open: end it, or start over. */
        healthy = ap_pg_exec(conn, "ROLLBACK", "rollback") == AP_OK &&
                  PQtransactionStatus(conn) == PQTRANS_IDLE;
    }
    if (!healthy)
        return reconnect(self);
    if (!self->prepared)
        return prepare_all(self);
    return AP_OK;
}

/* A free slot at the end of the queue (sending the queue first when it is full). */
static ap_err_t pg_begin(ap_uow_t *uow)
{
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    ap_err_t err;

    /* Inside a transaction: a savepoint named after the level it opens, sent lazily. */
    if (uow->depth > 0) {
        if ((err = pg_uow_ready(self)))
            return err;
        return pg_queue_savepoint(self, false, uow->depth + 1);
    }
    self->nwake = 0;
    if ((err = ready_session(self)))
        return err;
    /* Sent with the transaction's first statement (pg_pipe_open): one round trip less. */
    self->begin_pending = true;
    return AP_OK;
}

static void pg_rollback(ap_uow_t *uow)
{
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    unsigned level = uow->depth;
    char sql[80];

    /* A transaction the server never heard of: nothing to undo there. */
    if (level <= 1 && self->begin_pending) {
        pg_queue_clear(self, 0);
        self->begin_pending = false;
        uow->doomed = false;
        return;
    }
    /* A doomed transaction has only its outermost rollback left to do. */
    if (uow->doomed) {
        pg_queue_clear(self, 0);
        if (level <= 1) {
            if (!self->conn || ap_pg_exec(self->conn, "ROLLBACK", "rollback"))
                self->broken = true;
            uow->doomed = false;
        }
        return;
    }
    /* A lost connection took its transaction with it; begin will reconnect. */
    if (pg_uow_ready(self) != AP_OK || PQstatus(self->conn) != CONNECTION_OK) {
        self->broken = true;
        pg_queue_clear(self, 0);
        return;
    }
    /* A savepoint the server never saw: forget it and everything queued after it. */
    long at = level > 1 ? pg_queue_find_savepoint(self, level) : -1;
    if (at >= 0) {
        pg_queue_clear(self, (size_t)at);
        return;
    }
    /* Everything still queued belongs to this scope, which goes anyway. */
    pg_queue_clear(self, 0);
    if (level <= 1)
        snprintf(sql, sizeof sql, "ROLLBACK");
    else
        snprintf(sql, sizeof sql, "ROLLBACK TO SAVEPOINT s%u; RELEASE SAVEPOINT s%u", level,
                 level);
    /* If even this fails the session is in doubt: start the next transaction afresh. */
    if (execute_control(self, sql, "rollback"))
        self->broken = true;
}

/* A stored row that the model refuses (or a broken query): a bug or manual tampering. */
ap_err_t pg_uow_bad_row(const char *what, int row)
{
    AP_ERROR("pg", "%s: row %d does not fit the model", what, row);
    return AP_ERR_INTERNAL;
}

/* ---------------------------------------------------------------- repository: commit */

static bool needs_write(const ap_product_t *product)
{
    return product->is_new || product->nchanges > 0;
}

/* Where a product's writes go: a pipeline now, or the queue (uow->defer_writes). */
typedef struct emitter {
    pipe_t *pipe;
    pg_uow_t *self;
    ap_err_t err;
} emitter_t;

static void emit(emitter_t *e, enum stmt st, expect_t expect, const char *key, int nparams,
                 const char *const *params)
{
    if (e->pipe)
        pg_pipe_send(e->pipe, st, expect, key, nparams, params);
    else if (e->err == AP_OK)
        e->err = pg_queue_stmt(e->self, st, NULL, NULL, expect, key, nparams, params, NULL, NULL);
}

/* The version check, then the recorded changes in order. */
static void send_product(emitter_t *pipe, const ap_product_t *product)
{
    char version[AP_PG_INT_SIZE], stored[AP_PG_INT_SIZE], qty[AP_PG_INT_SIZE];
    char eta[AP_PG_INT_SIZE];

    pg_uow_fmt_int(version, product->version_number);
    if (product->is_new) {
        const char *params[] = {product->sku, version};
        emit(pipe, ST_PRODUCT_INSERT, EXPECT_VERSION, product->sku, 2, params);
    } else {
        const char *params[] = {product->sku, pg_uow_fmt_int(stored, product->stored_version), version};
        emit(pipe, ST_PRODUCT_CAS, EXPECT_VERSION, product->sku, 3, params);
    }
    for (size_t i = 0; i < product->nchanges; i++) {
        const ap_change_t *change = &product->changes[i];
        const ap_batch_t *batch = &product->batches[change->batch];
        switch (change->kind) {
        case AP_CHANGE_ADD_BATCH: {
            const char *params[] = {batch->ref, batch->sku, pg_uow_fmt_int(qty, batch->purchased_qty),
                                    batch->has_eta ? pg_uow_fmt_int(eta, batch->eta) : NULL};
            emit(pipe, ST_BATCH_INSERT, EXPECT_ONE_ROW, batch->ref, 4, params);
            break;
        }
        case AP_CHANGE_SET_QTY: {
            const char *params[] = {batch->ref, pg_uow_fmt_int(qty, batch->purchased_qty)};
            emit(pipe, ST_BATCH_SET_QTY, EXPECT_ONE_ROW, batch->ref, 2, params);
            break;
        }
        case AP_CHANGE_ADD_LINE:
        case AP_CHANGE_REMOVE_LINE: {
            const char *params[] = {batch->ref, change->line.orderid,
                                    pg_uow_fmt_int(qty, change->line.qty)};
            enum stmt st = change->kind == AP_CHANGE_ADD_LINE ? ST_LINE_ADD : ST_LINE_REMOVE;
            emit(pipe, st, EXPECT_ONE_ROW, batch->ref, 3, params);
            break;
        }
        }
    }
}

/*
 * Writes every product handed out that has something to write, in one pipeline; or, with
 * uow->defer_writes, queues the writes to go with the next round trip.
 */
static ap_err_t write_products(pg_uow_t *self)
{
    const ap_uow_t *uow = &self->uow;
    size_t nwrites = 0;
    pipe_t pipe;
    emitter_t e = {NULL, self, AP_OK};

    for (size_t i = 0; i < uow->nseen; i++)
        nwrites += needs_write(uow->seen[i]);
    if (nwrites == 0)
        return AP_OK;
    if (!uow->defer_writes || uow->depth <= 1) {
        pg_pipe_open(&pipe, self);
        e.pipe = &pipe;
    }
    for (size_t i = 0; i < uow->nseen && !e.err && !(e.pipe && pipe.err); i++) {
        if (needs_write(uow->seen[i]))
            send_product(&e, uow->seen[i]);
    }
    return e.pipe ? pg_pipe_close(&pipe) : e.err;
}

/*
 * The COMMIT, followed in the same query string by the wake-ups the transaction asked for:
 * "COMMIT; BEGIN; SET LOCAL synchronous_commit TO off; NOTIFY a; ...; COMMIT". The server
 * runs what follows the COMMIT only once it succeeded (an error skips the rest of the
 * string), and the NOTIFYs' own commit neither waits for a WAL flush nor holds the notify
 * lock while another commit's flush goes on.
 */
static char *commit_sql(const pg_uow_t *self)
{
    ap_strbuf_t sb = AP_STRBUF_INIT;
    ap_strbuf_adds(&sb, "COMMIT");
    if (self->nwake > 0) {
        ap_strbuf_adds(&sb, "; BEGIN; SET LOCAL synchronous_commit TO off");
        for (size_t i = 0; i < self->nwake; i++) {
            ap_strbuf_adds(&sb, "; NOTIFY ");
            ap_strbuf_adds(&sb, self->wake[i]);
        }
        ap_strbuf_adds(&sb, "; COMMIT");
    }
    return ap_strbuf_detach(&sb);
}

/* After the COMMIT's own result: the wake-ups' results. Their failure loses a wake-up, not
 * data (the listeners poll too), so it is logged, and a session left in a transaction is
 * ended by the next begin. */
static void finish_wake(pg_uow_t *self)
{
    PGresult *res;
    bool logged = false;
    while ((res = PQgetResult(self->conn))) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && !logged) {
            AP_WARN("pg", "waking the listeners after a commit failed (they poll instead): %s",
                    PQresultErrorMessage(res));
            logged = true;
        }
        PQclear(res);
    }
    if (PQstatus(self->conn) != CONNECTION_OK)
        self->broken = true;
}

/* COMMIT of a transaction that had already failed answers ROLLBACK, not an error. */
static ap_err_t commit_transaction(pg_uow_t *self)
{
    char *sql = commit_sql(self);
    PGresult *res = NULL;
    ap_err_t err = AP_OK;

    if (!sql)
        return AP_ERR_NOMEM;
    if (PQsendQuery(self->conn, sql))
        res = PQgetResult(self->conn);
    free(sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        err = ap_pg_fail(self->conn, res, "commit");
    } else if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        AP_ERROR("pg", "commit: the transaction had failed earlier and was rolled back");
        err = AP_ERR_INTERNAL;
    }
    PQclear(res);
    if (res)
        finish_wake(self); /* also reads to the end after a failed COMMIT */
    return err ? pg_uow_check_lost(self, err) : AP_OK;
}

static ap_err_t pg_commit(ap_uow_t *uow)
{
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    unsigned level = uow->depth;
    ap_err_t err;

    if ((err = pg_uow_ready(self)) || (err = write_products(self)))
        return err;
    if (level > 1) {
        /* A scope the server never heard of needs no RELEASE, and its SAVEPOINT can go: on
         * success the writes queued after it belong to the parent scope just the same. */
        long at = pg_queue_find_savepoint(self, level);
        if (at >= 0) {
            pg_queue_remove(self, (size_t)at);
        } else if ((err = pg_queue_savepoint(self, true, level))) {
            return err;
        }
    } else {
        /* COMMIT ends every savepoint: queued RELEASEs have nothing left to do, but deferred
         * writes go first. */
        if (pg_queue_has_writes(self) && (err = pg_queue_flush(self)))
            return err;
        pg_queue_clear(self, 0);
        if (self->begin_pending) {
            self->begin_pending = false; /* nothing was sent: nothing to commit */
        } else if ((err = pg_uow_ready(self)) || (err = commit_transaction(self))) {
            return err;
        }
    }
    for (size_t i = 0; i < uow->nseen; i++) {
        if (needs_write(uow->seen[i]))
            ap_product_mark_stored(uow->seen[i]);
    }
    return AP_OK;
}

/* ---------------------------------------------------------------- read model, offsets */

/* A write whose row count nobody needs: queued when writes may be deferred. */
static ap_err_t write_row(ap_uow_t *uow, enum stmt st, const char *sql, const char *many_sql,
                          int nparams, const char *const *params, const int *lengths,
                          const int *formats)
{
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    PGresult *res = NULL;
    ap_err_t err = pg_uow_ready(self);
    if (err)
        return err;
    if (uow->defer_writes && uow->depth > 0)
        return pg_queue_stmt(self, st, sql, many_sql, EXPECT_DONE, NULL, nparams, params, lengths,
                          formats);
    const stmt_call_t call = {st, sql, nparams, params, lengths, formats};
    if ((err = execute_now(self, &call, PGRES_COMMAND_OK, &res)))
        return err;
    PQclear(res);
    return AP_OK;
}

static ap_err_t pg_view_add(ap_uow_t *uow, const char *orderid, const char *sku,
                            const char *batchref)
{
    const char *params[] = {orderid, sku, batchref};
    return write_row(uow, ST_VIEW_ADD, NULL, NULL, 3, params, NULL, NULL);
}

static ap_err_t pg_view_remove(ap_uow_t *uow, const char *orderid, const char *sku,
                               const char *batchref)
{
    const char *params[] = {orderid, sku, batchref};
    return write_row(uow, ST_VIEW_REMOVE, NULL, NULL, 3, params, NULL, NULL);
}

static ap_err_t pg_claim_partition(ap_uow_t *uow, const char *group, const char *topic,
                                   int32_t partition, int64_t *epoch, int64_t *next_offset)
{
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    char part[AP_PG_INT_SIZE];
    const char *params[] = {group, topic, pg_uow_fmt_int(part, partition)};
    PGresult *res = NULL;
    int64_t claimed, next;
    ap_err_t err;

    if ((err = pg_uow_execute(self, ST_CLAIM, 3, params, PGRES_TUPLES_OK, &res)))
        goto out;
    if (PQntuples(res) != 1 || !ap_pg_get_int64(res, 0, 0, &claimed) ||
        !ap_pg_get_int64(res, 0, 1, &next)) {
        err = pg_uow_bad_row(pg_stmts[ST_CLAIM].name, 0);
        goto out;
    }
    *epoch = claimed;
    *next_offset = next;
out:
    PQclear(res);
    return err;
}

static ap_err_t pg_advance_offset(ap_uow_t *uow, const char *group, const char *topic,
                                  int32_t partition, int64_t epoch, int64_t expected,
                                  int64_t next)
{
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    char part[AP_PG_INT_SIZE], ep[AP_PG_INT_SIZE], from[AP_PG_INT_SIZE], to[AP_PG_INT_SIZE];
    const char *params[] = {group,
                            topic,
                            pg_uow_fmt_int(part, partition),
                            pg_uow_fmt_int(ep, epoch),
                            pg_uow_fmt_int(from, expected),
                            pg_uow_fmt_int(to, next)};
    long rows;
    ap_err_t err;
    if (uow->defer_writes && uow->depth > 0) {
        /* With the commit's writes: a fenced one fails the commit (AP_ERR_FENCED). */
        if ((err = pg_uow_ready(self)))
            return err;
        char key[AP_STR_SIZE];
        snprintf(key, sizeof key, "%s/%s/%d", group, topic, (int)partition);
        return pg_queue_stmt(self, ST_ADVANCE, NULL, NULL, EXPECT_FENCE, key, 6, params, NULL,
                             NULL);
    }
    err = execute_counting(self, ST_ADVANCE, 6, params, &rows);
    if (err)
        return err;
    if (rows != 1) {
        AP_DEBUG("pg", "advance %s/%s/%d: fenced (epoch %" PRId64 ", offset %" PRId64 ")",
                 group, topic, (int)partition, epoch, expected);
        return AP_ERR_FENCED;
    }
    return AP_OK;
}

/* ---------------------------------------------------------------- life cycle */

static void pg_free(ap_uow_t *uow)
{
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    pg_queue_clear(self, 0);
    free(self->pending);
    PQfinish(self->conn);
    free(self->conninfo);
    free(self);
}

static const struct ap_uow_ops pg_uow_ops = {
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .repo = {
        .load = pg_load,
        .load_by_batchref = pg_load_by_batchref,
        .load_many = pg_load_many,
        .load_orders = pg_load_orders,
        .load_older_lines = pg_load_older_lines,
    },
    .view = {.add = pg_view_add, .remove = pg_view_remove},
    .offsets = {.claim = pg_claim_partition, .advance = pg_advance_offset},
    .free = pg_free,
};

ap_err_t ap_pg_uow_command(ap_uow_t *uow, const char *sql, int nparams, const char *const *params,
                           const int *lengths, const int *formats, long *rows)
{
    const stmt_call_t call = {ST__COUNT, sql, nparams, params, lengths, formats};
    PGresult *res = NULL;
    ap_err_t err;

    if (uow->ops != &pg_uow_ops) {
        AP_ERROR("pg", "command: not a PostgreSQL unit of work");
        return AP_ERR_INTERNAL;
    }
    if (!rows)
        return write_row(uow, ST__COUNT, sql, NULL, nparams, params, lengths, formats);
    err = execute_now(container_of(uow, pg_uow_t, uow), &call, PGRES_COMMAND_OK, &res);
    if (err)
        return err;
    if (rows)
        *rows = strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return AP_OK;
}

void ap_pg_uow_notify_on_commit(ap_uow_t *uow, const char *channel)
{
    if (uow->ops != &pg_uow_ops) {
        AP_ERROR("pg", "notify: not a PostgreSQL unit of work");
        return;
    }
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    for (size_t i = 0; i < self->nwake; i++) {
        if (strcmp(self->wake[i], channel) == 0)
            return;
    }
    assert(self->nwake < MAX_WAKE);
    if (self->nwake < MAX_WAKE)
        self->wake[self->nwake++] = channel;
}

ap_err_t ap_pg_uow_insert(ap_uow_t *uow, const char *sql, const char *many_sql, int nparams,
                          const char *const *params, const int *lengths, const int *formats)
{
    if (uow->ops != &pg_uow_ops) {
        AP_ERROR("pg", "insert: not a PostgreSQL unit of work");
        return AP_ERR_INTERNAL;
    }
    return write_row(uow, ST__COUNT, sql, many_sql, nparams, params, lengths, formats);
}

ap_err_t ap_pg_uow_query(ap_uow_t *uow, const char *sql, int nparams, const char *const *params,
                         PGresult **out)
{
    const stmt_call_t call = {ST__COUNT, sql, nparams, params, NULL, NULL};

    if (uow->ops != &pg_uow_ops) {
        AP_ERROR("pg", "query: not a PostgreSQL unit of work");
        return AP_ERR_INTERNAL;
    }
    return execute_now(container_of(uow, pg_uow_t, uow), &call, PGRES_TUPLES_OK, out);
}

ap_err_t ap_pg_uow_new(const char *conninfo, ap_uow_t **out)
{
    pg_uow_t *self = calloc(1, sizeof *self);
    ap_err_t err = AP_ERR_NOMEM;

    if (!self || !(self->conninfo = strdup(conninfo)))
        goto out;
    ap_uow_init(&self->uow, &pg_uow_ops);
    if ((err = reconnect(self)))
        goto out;
    *out = &self->uow;
    self = NULL;
out:
    if (self)
        pg_free(&self->uow);
    return err;
}
