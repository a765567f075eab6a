/*
 * pg_pipeline.c - how the PostgreSQL unit of work talks to the server in few round trips:
 * libpq pipelines, the queue of statements not sent yet (savepoints opened and released
 * lazily, writes deferred with uow->defer_writes), and the merging of consecutive queued
 * writes into one many-row statement per table.
 *
 * It decides nothing about transactions: pg_uow.c says what to queue, what to send and
 * when; this file sends it, checks every result against what it expected (a version check
 * touching no row is a conflict), and dooms a transaction whose deferred write failed.
 */
#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "adapters/pg_uow_internal.h"
#include "ap/array.h"
#include "ap/log.h"
#include "ap/strset.h"

/* ---------------------------------------------------------------- pipelines */

/* Records a failure; only the first is logged, the rest would be its echoes. */
static void pipe_fail(pipe_t *pipe, const PGresult *res, const char *what)
{
    if (pipe->err == AP_OK)
        pipe->err = pg_uow_check_lost(pipe->self, ap_pg_fail(pipe->self->conn, res, what));
    else
        (void)pg_uow_check_lost(pipe->self, pipe->err);
}

/* A pipeline we can no longer read in step: give the session up. */
static void pipe_lost(pipe_t *pipe, const PGresult *res, const char *what)
{
    pipe_fail(pipe, res, what);
    pipe->self->broken = true;
}

/*
 * A deferred write failed after its scope had been let go: the server's transaction is
 * aborted somewhere the scopes cannot name any more, so nothing but the outermost rollback
 * can follow. Callers see a conflict, which makes the owner of the transaction retry it; a
 * consumer offset's fenced move stays AP_ERR_FENCED, which makes it retry without the
 * partition.
 */
static void doom_if_deferred(pipe_t *pipe, size_t i)
{
    if (!pipe->sent[i].deferred || pipe->err == AP_ERR_UNAVAILABLE)
        return;
    AP_DEBUG("pg", "a deferred %s failed: the transaction will be retried", pipe->sent[i].what);
    pipe->self->uow.doomed = true;
    if (pipe->err != AP_ERR_FENCED) /* the consumer must hear that one as it is */
        pipe->err = AP_ERR_CONFLICT;
}

/* Checks one statement's result; true when it was kept for the caller. */
static bool pipe_check(pipe_t *pipe, size_t i, PGresult *res)
{
    ExecStatusType status = PQresultStatus(res);
    expect_t expect = pipe->sent[i].expect;
    const char *key = pipe->sent[i].key;

    if (status == PGRES_PIPELINE_ABORTED || pipe->err)
        return false; /* an earlier failure already decided */
    if (status != (expect == EXPECT_KEEP ? pipe->want : PGRES_COMMAND_OK)) {
        pipe_fail(pipe, res, pipe->sent[i].what);
        doom_if_deferred(pipe, i);
        return false;
    }
    if (expect == EXPECT_KEEP) {
        pipe->kept = res;
        return true;
    }
    if (expect == EXPECT_DONE || strtol(PQcmdTuples(res), NULL, 10) == pipe->sent[i].rows)
        return false;
    if (expect == EXPECT_VERSION) {
        AP_DEBUG("pg", "product %s: stored version changed since it was loaded", key);
        pipe->err = AP_ERR_CONFLICT;
    } else if (expect == EXPECT_FENCE) {
        AP_DEBUG("pg", "advance %s: fenced", key);
        pipe->err = AP_ERR_FENCED;
    } else {
        AP_ERROR("pg", "%s %s: storage does not match the loaded product", pipe->sent[i].what,
                 key);
        pipe->err = AP_ERR_INTERNAL;
    }
    doom_if_deferred(pipe, i);
    return false;
}

/* Sends a sync and reads the results of everything sent since the last one. */
static void pipe_sync(pipe_t *pipe)
{
    PGconn *conn = pipe->self->conn;
    PGresult *res = NULL;
    size_t nsent = pipe->nsent;

    pipe->nsent = 0;
    if (!PQpipelineSync(conn)) {
        pipe_lost(pipe, NULL, "pipeline sync");
        return;
    }
    for (size_t i = 0; i < nsent; i++) {
        /* Each statement gives one result, then NULL. */
        if (!(res = PQgetResult(conn))) {
            pipe_lost(pipe, NULL, "pipeline");
            return;
        }
        if (!pipe_check(pipe, i, res))
            PQclear(res);
        if (PQstatus(conn) != CONNECTION_OK) {
            pipe_lost(pipe, NULL, "pipeline");
            return;
        }
        if ((res = PQgetResult(conn))) {
            PQclear(res);
            AP_ERROR("pg", "pipeline: more results than statements");
            pipe_lost(pipe, NULL, "pipeline");
            return;
        }
    }
    res = PQgetResult(conn);
    if (PQresultStatus(res) != PGRES_PIPELINE_SYNC)
        pipe_lost(pipe, res, "pipeline sync");
    PQclear(res);
}

/* Bookkeeping after a send; `sent` is what PQsend* returned. */
static void pipe_sent(pipe_t *pipe, int sent, const char *what, const char *key, expect_t expect,
                      long rows)
{
    if (!sent) {
        pipe_lost(pipe, NULL, what); /* the statements before it can no longer be read */
        return;
    }
    pipe->sent[pipe->nsent].what = what;
    snprintf(pipe->sent[pipe->nsent].key, sizeof pipe->sent[pipe->nsent].key, "%s",
             key ? key : "");
    pipe->sent[pipe->nsent].expect = expect;
    pipe->sent[pipe->nsent].rows = rows;
    pipe->sent[pipe->nsent].deferred = pipe->sending_queue;
    if (++pipe->nsent == PIPE_CHUNK)
        pipe_sync(pipe);
}

void pg_pipe_send(pipe_t *pipe, enum stmt st, expect_t expect, const char *key, int nparams,
                      const char *const *params)
{
    if (pipe->err)
        return;
    int sent = PQsendQueryPrepared(pipe->self->conn, pg_stmts[st].name, nparams, params, NULL, NULL,
                                   0);
    pipe_sent(pipe, sent, pg_stmts[st].name, key, expect, 1);
}

void pg_pipe_send_named(pipe_t *pipe, const char *name, expect_t expect, long rows,
                        int nparams, const char *const *params, const int *lengths,
                        const int *formats)
{
    if (pipe->err)
        return;
    int sent = PQsendQueryPrepared(pipe->self->conn, name, nparams, params, lengths, formats, 0);
    pipe_sent(pipe, sent, name, NULL, expect, rows);
}

void pg_pipe_send_sql(pipe_t *pipe, const char *what, const char *sql, expect_t expect,
                          int nparams, const char *const *params, const int *lengths,
                          const int *formats)
{
    if (pipe->err)
        return;
    int sent = PQsendQueryParams(pipe->self->conn, sql, nparams, NULL, params, lengths, formats,
                                 0);
    pipe_sent(pipe, sent, what, NULL, expect, 1);
}

/* ---------------------------------------------------------------- deferred writes, merged */

/* Sends one queued statement as it was queued. */
static void send_one(pipe_t *pipe, const pending_t *p)
{
    const char *const *params = (const char *const *)p->params;
    if (p->st != ST__COUNT)
        pg_pipe_send(pipe, p->st, p->expect, p->key, p->nparams, params);
    else if (p->name[0])
        pg_pipe_send_named(pipe, p->name, p->expect, 1, p->nparams, params, p->lengths,
                           p->formats);
    else
        pg_pipe_send_sql(pipe, "deferred command", p->sql, p->expect, p->nparams, params,
                      p->lengths, p->formats);
}

/*
 * Sends a statement prepared as `name` over arrays: parameter c of row r is cols[c][r].
 * Every row must touch one row of the table (when `expect` counts rows). Each array goes in
 * binary: a text[] of the column's text, or, for a column with lengths (lens[c][r] bytes
 * each; `lens` NULL or lens[c] NULL for none), a bytea[] of its bytes; the statement declares
 * each parameter accordingly.
 */
static void send_many(pipe_t *pipe, const char *name, expect_t expect, size_t nrows, int ncols,
                      const char **const *cols, const int *const *lens)
{
    char *arrays[MAX_PARAMS] = {NULL};
    int lengths[MAX_PARAMS], formats[MAX_PARAMS];
    bool ok = true;
    for (int c = 0; c < ncols && ok; c++) {
        const int *bytes = lens ? lens[c] : NULL;
        arrays[c] = ap_pg_binary_array(bytes ? AP_PG_BYTEA_OID : AP_PG_TEXT_OID, cols[c], bytes,
                                       nrows, &lengths[c]);
        formats[c] = 1;
        ok = arrays[c] != NULL;
    }
    if (ok)
        pg_pipe_send_named(pipe, name, expect, (long)nrows, ncols,
                           (const char *const *)arrays, lengths, formats);
    else if (pipe->err == AP_OK)
        pipe->err = AP_ERR_NOMEM;
    for (int c = 0; c < ncols; c++)
        free(arrays[c]);
}

/* The name of a queued statement's many-row form (same parameters, each an array), or NULL. */
static const char *many_form(const pending_t *p)
{
    switch (p->st) {
    case ST_LINE_ADD:
        return pg_stmts[ST_LINE_ADD_MANY].name;
    case ST_VIEW_ADD:
        return pg_stmts[ST_VIEW_ADD_MANY].name;
    case ST__COUNT:
        return p->many[0] ? p->many : NULL; /* ap_pg_uow_insert */
    default:
        return NULL;
    }
}

static bool same_form(const char *many, const pending_t *p)
{
    const char *other = many_form(p);
    return other && strcmp(other, many) == 0;
}

/*
 * Sends each run of consecutive statements that share a many-row form as one statement (text
 * parameters as text[], binary ones, which are bytea, as bytea[]), the rest one by one, in
 * queue order. `scratch` has room for MAX_PARAMS * n pointers.
 */
static void send_runs(pipe_t *pipe, const pending_t *const *items, size_t n,
                      const char **scratch)
{
    int *bytes = NULL; /* the binary columns' lengths, MAX_PARAMS * n of them when needed */
    for (size_t i = 0; i < n && !pipe->err;) {
        const pending_t *p = items[i];
        const char *many = many_form(p);
        size_t end = i + 1;
        while (many && end < n && same_form(many, items[end]))
            end++;
        if (end - i < 2) {
            send_one(pipe, p);
            i++;
            continue;
        }
        size_t nrows = end - i;
        const char **cols[MAX_PARAMS];
        const int *lens[MAX_PARAMS];
        for (int c = 0; c < p->nparams; c++) {
            int *col = NULL; /* a binary (bytea) column's lengths */
            if (p->formats[c]) {
                if (!bytes && !(bytes = malloc((size_t)MAX_PARAMS * n * sizeof *bytes))) {
                    pipe->err = AP_ERR_NOMEM; /* none before: the loop checks */
                    break;
                }
                col = bytes + (size_t)c * n;
            }
            cols[c] = scratch + (size_t)c * n;
            for (size_t r = 0; r < nrows; r++) {
                cols[c][r] = items[i + r]->params[c];
                if (col)
                    col[r] = items[i + r]->lengths[c];
            }
            lens[c] = col;
        }
        if (pipe->err)
            break;
        send_many(pipe, many, p->expect, nrows, p->nparams, (const char **const *)cols, lens);
        i = end;
    }
    free(bytes);
}

/*
 * The product writes of a run, one statement for the new products and one for the version
 * checks. A product changed by several commands is checked once, from the version the run
 * started with to the last; false (nothing sent) when the run is not such a chain.
 */
static bool send_products(pipe_t *pipe, const pending_t *const *items, size_t n,
                          const char **scratch)
{
    const char **sku = scratch, **from = scratch + n, **to = scratch + 2 * n;
    bool *insert = calloc(n ? n : 1, sizeof *insert);
    ap_strset_t rows; /* the rows by sku */
    size_t nrows = 0;
    bool ok = ap_strset_init(&rows, n) && insert != NULL;

    for (size_t i = 0; i < n && ok; i++) {
        const pending_t *p = items[i];
        size_t j;
        ap_strset_add_t added = ap_strset_add(&rows, p->params[0], nrows, &j);
        if (added == AP_STRSET_NOMEM) {
            ok = false; /* send them as they are */
        } else if (added == AP_STRSET_ADDED) {
            insert[nrows] = p->st == ST_PRODUCT_INSERT;
            sku[nrows] = p->params[0];
            from[nrows] = insert[nrows] ? NULL : p->params[1];
            to[nrows] = insert[nrows] ? p->params[1] : p->params[2];
            nrows++;
        } else if (p->st == ST_PRODUCT_CAS && strcmp(to[j], p->params[1]) == 0) {
            to[j] = p->params[2];
        } else {
            ok = false; /* not one chain of versions: send them as they are */
        }
    }
    for (int pass = 0; pass < 2 && ok; pass++) {
        /* Compact the rows of this pass to the front of a second scratch area. */
        const char **c0 = scratch + 3 * n, **c1 = scratch + 4 * n, **c2 = scratch + 5 * n;
        size_t m = 0;
        for (size_t j = 0; j < nrows; j++) {
            if (insert[j] != (pass == 0))
                continue;
            c0[m] = sku[j];
            c1[m] = pass == 0 ? to[j] : from[j];
            c2[m++] = to[j];
        }
        const char **const cols[3] = {c0, c1, c2};
        enum stmt st = pass == 0 ? ST_PRODUCT_INSERT_MANY : ST_PRODUCT_CAS_MANY;
        if (m > 0)
            send_many(pipe, pg_stmts[st].name, EXPECT_VERSION, m, pass == 0 ? 2 : 3, cols, NULL);
    }
    ap_strset_free(&rows);
    free(insert);
    return ok;
}

/*
 * A run of deferred writes (no savepoint among them: they all belong to the transaction)
 * in as few statements as it can: grouped by table, in the order the tables depend on each
 * other (products, batches, lines, read model, then the rest, such as the outbox), each
 * table's writes in queue order, consecutive inserts as one statement. Every statement
 * still checks its row count, so a stale version still dooms the transaction.
 */
static void send_writes(pipe_t *pipe, const pending_t *run, size_t n)
{
    enum { T_PRODUCTS, T_BATCHES, T_LINES, T_VIEWS, T_OTHER, T__COUNT };
    const pending_t **items = malloc((n ? n : 1) * T__COUNT * sizeof *items);
    const char **scratch = malloc((n ? n : 1) * MAX_PARAMS * sizeof *scratch);
    size_t count[T__COUNT] = {0};

    if (!items || !scratch || n < 2) {
        for (size_t i = 0; i < n && !pipe->err; i++)
            send_one(pipe, &run[i]);
        free(items);
        free(scratch);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int t;
        switch (run[i].st) {
        case ST_PRODUCT_INSERT: case ST_PRODUCT_CAS: t = T_PRODUCTS; break;
        case ST_BATCH_INSERT: case ST_BATCH_SET_QTY: t = T_BATCHES; break;
        case ST_LINE_ADD: case ST_LINE_REMOVE: t = T_LINES; break;
        case ST_VIEW_ADD: case ST_VIEW_REMOVE: t = T_VIEWS; break;
        default: t = T_OTHER; break;
        }
        items[t * n + count[t]++] = &run[i];
    }
    if (!send_products(pipe, items + T_PRODUCTS * n, count[T_PRODUCTS], scratch)) {
        for (size_t i = 0; i < count[T_PRODUCTS] && !pipe->err; i++)
            send_one(pipe, items[T_PRODUCTS * n + i]);
    }
    for (int t = T_BATCHES; t < T__COUNT && !pipe->err; t++)
        send_runs(pipe, items + t * n, count[t], scratch);
    free(items);
    free(scratch);
}

void pg_queue_clear(pg_uow_t *self, size_t at)
{
    for (size_t i = at; i < self->npending; i++) {
        pending_t *p = &self->pending[i];
        free(p->sql);
        free(p->key);
        for (int j = 0; j < p->nparams; j++)
            free(p->params[j]);
    }
    if (at < self->npending)
        self->npending = at;
}

void pg_queue_remove(pg_uow_t *self, size_t at)
{
    pending_t removed = self->pending[at];
    memmove(&self->pending[at], &self->pending[at + 1],
            (self->npending - at - 1) * sizeof removed);
    self->pending[self->npending - 1] = removed;
    pg_queue_clear(self, self->npending - 1);
}

void pg_pipe_open(pipe_t *pipe, pg_uow_t *self)
{
    memset(pipe, 0, sizeof *pipe);
    pipe->self = self;
    if ((pipe->err = pg_uow_ready(self)))
        return;
    if (!PQenterPipelineMode(self->conn)) {
        pipe_lost(pipe, NULL, "pipeline");
        return;
    }
    pipe->open = true;
    if (self->begin_pending) {
        self->begin_pending = false;
        pg_pipe_send_sql(pipe, "begin", "BEGIN ISOLATION LEVEL READ COMMITTED", EXPECT_DONE, 0,
                         NULL, NULL, NULL);
    }
    pipe->sending_queue = true;
    for (size_t i = 0; i < self->npending && !pipe->err;) {
        const pending_t *p = &self->pending[i];
        if (p->kind == PENDING_STMT) {
            size_t end = i + 1;
            while (end < self->npending && self->pending[end].kind == PENDING_STMT)
                end++;
            send_writes(pipe, p, end - i);
            i = end;
            continue;
        }
        char sql[48];
        snprintf(sql, sizeof sql, "%sSAVEPOINT s%u",
                 p->kind == PENDING_RELEASE ? "RELEASE " : "", p->level);
        pg_pipe_send_sql(pipe, p->kind == PENDING_RELEASE ? "release savepoint" : "savepoint", sql,
                      EXPECT_DONE, 0, NULL, NULL, NULL);
        i++;
    }
    pipe->sending_queue = false;
    pg_queue_clear(self, 0);
}

ap_err_t pg_pipe_close(pipe_t *pipe)
{
    pg_uow_t *self = pipe->self;
    if (pipe->open && !self->broken && pipe->nsent > 0)
        pipe_sync(pipe);
    if (pipe->open && !self->broken && !PQexitPipelineMode(self->conn))
        pipe_lost(pipe, NULL, "pipeline");
    if (pipe->err && pipe->kept) {
        PQclear(pipe->kept);
        pipe->kept = NULL;
    }
    return pipe->err;
}

ap_err_t pg_queue_flush(pg_uow_t *self)
{
    pipe_t pipe;
    pg_pipe_open(&pipe, self);
    return pg_pipe_close(&pipe);
}
static ap_err_t queue_slot(pg_uow_t *self, pending_t **out)
{
    ap_err_t err;
    if (self->npending == MAX_PENDING && (err = pg_queue_flush(self)))
        return err;
    if (!AP_ARRAY_RESERVE(self->pending, self->pending_cap, self->npending + 1))
        return AP_ERR_NOMEM;
    *out = &self->pending[self->npending];
    memset(*out, 0, sizeof **out);
    return AP_OK;
}

ap_err_t pg_queue_savepoint(pg_uow_t *self, bool release, unsigned level)
{
    pending_t *p;
    ap_err_t err = queue_slot(self, &p);
    if (err)
        return err;
    p->kind = release ? PENDING_RELEASE : PENDING_SAVEPOINT;
    p->level = level;
    self->npending++;
    return AP_OK;
}

ap_err_t pg_queue_stmt(pg_uow_t *self, enum stmt st, const char *sql, const char *many_sql,
                           expect_t expect, const char *key, int nparams,
                           const char *const *params, const int *lengths, const int *formats)
{
    pending_t *p;
    ap_err_t err = queue_slot(self, &p);
    if (err)
        return err;
    assert(nparams <= MAX_PARAMS);
    p->kind = PENDING_STMT;
    p->st = st;
    p->expect = expect;
    p->nparams = nparams;
    if (sql && pg_uow_named_statement(self, sql, p->name))
        sql = NULL; /* sent by name */
    if (many_sql && !pg_uow_named_statement(self, many_sql, p->many))
        p->many[0] = '\0';
    bool ok = (!sql || (p->sql = strdup(sql))) && (!key || (p->key = strdup(key)));
    for (int i = 0; ok && i < nparams; i++) {
        if (!params[i])
            continue;
        size_t len = formats && formats[i] ? (size_t)lengths[i] : strlen(params[i]) + 1;
        if ((p->params[i] = malloc(len ? len : 1)))
            memcpy(p->params[i], params[i], len);
        ok = p->params[i] != NULL;
        p->lengths[i] = lengths ? lengths[i] : 0;
        p->formats[i] = formats ? formats[i] : 0;
    }
    self->npending++;
    if (!ok) {
        pg_queue_clear(self, self->npending - 1);
        return AP_ERR_NOMEM;
    }
    return AP_OK;
}

bool pg_queue_has_writes(const pg_uow_t *self)
{
    for (size_t i = 0; i < self->npending; i++) {
        if (self->pending[i].kind == PENDING_STMT)
            return true;
    }
    return false;
}

long pg_queue_find_savepoint(const pg_uow_t *self, unsigned level)
{
    for (size_t i = self->npending; i-- > 0;) {
        if (self->pending[i].kind == PENDING_SAVEPOINT && self->pending[i].level == level)
            return (long)i;
    }
    return -1;
}

