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
 * statement is prepared once per connection; a commit sends all its writes in one libpq
 * pipeline; and savepoints are opened and released lazily, riding in the pipeline of the
 * next statement that needs the server (a scope that touched nothing costs nothing). A
 * failure that leaves the session in doubt marks it broken; the next outermost begin
 * reconnects. The connection helpers the other pg adapters share (pg_internal.h) live here
 * too.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "adapters/pg_internal.h"
#include "ap/log.h"
#include "ap/pg.h"

/* ---------------------------------------------------------------- shared helpers */

/* Server notices (e.g. "relation already exists, skipping") go to the log, not stderr. */
static void notice_to_log(void *arg, const char *message)
{
    (void)arg;
    size_t len = strlen(message);
    while (len > 0 && (message[len - 1] == '\n' || message[len - 1] == ' '))
        len--;
    AP_DEBUG("pg", "server: %.*s", (int)len, message);
}

PGconn *ap_pg_connect(const char *conninfo)
{
    /* libpq's parse errors quote pieces of the string, which may be a password: check the
     * syntax first and say only that it is wrong. */
    char *why = NULL;
    PQconninfoOption *options = PQconninfoParse(conninfo, &why);
    if (!options) {
        AP_ERROR("pg", "connect: the connection string is not valid");
        PQfreemem(why);
        return NULL;
    }
    PQconninfoFree(options);

    /* Defaults the connection string may override (it is expanded after them): a server
     * that stops answering without closing the connection is noticed in about a minute,
     * instead of leaving a call blocked until the kernel gives up on TCP. */
    static const char *const keywords[] = {
        "application_name", "connect_timeout", "keepalives", "keepalives_idle",
        "keepalives_interval", "keepalives_count", "tcp_user_timeout", "dbname", NULL};
    const char *values[] = {"allocation-processor", "10", "1", "30", "10", "3", "60000",
                            conninfo, NULL};
    PGconn *conn = PQconnectdbParams(keywords, values, 1);
    if (!conn) {
        AP_ERROR("pg", "connect: out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        (void)ap_pg_fail(conn, NULL, "connect");
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, notice_to_log, NULL);
    return conn;
}

static bool sqlstate_is(const char *state, const char *prefix)
{
    return state && strncmp(state, prefix, strlen(prefix)) == 0;
}

ap_err_t ap_pg_fail(PGconn *conn, const PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *text = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    ap_err_t err;

    if (!text || !*text)
        text = res ? PQresultErrorMessage(res) : "";
    if (!*text && conn)
        text = PQerrorMessage(conn);
    if (!*text)
        text = res ? PQresStatus(PQresultStatus(res)) : "no result";

    if (sqlstate_is(state, "40001") || sqlstate_is(state, "40P01") ||
        sqlstate_is(state, "23505"))
        err = AP_ERR_CONFLICT;
    else if (!conn || PQstatus(conn) != CONNECTION_OK || sqlstate_is(state, "08") ||
             sqlstate_is(state, "57P") || sqlstate_is(state, "53300"))
        err = AP_ERR_UNAVAILABLE;
    else
        err = AP_ERR_INTERNAL;

    /* One line: libpq's text spans several (DETAIL, HINT, "server closed ..."). */
    char line[512];
    size_t len = 0;
    for (const char *p = text; *p && len < sizeof line - 1; p++) {
        bool space = *p == '\n' || *p == '\t' || *p == '\r' || *p == ' ';
        if (!space)
            line[len++] = *p;
        else if (len > 0 && line[len - 1] != ' ')
            line[len++] = ' ';
    }
    while (len > 0 && line[len - 1] == ' ')
        len--;
    line[len] = '\0';

    ap_log_level_t level = err == AP_ERR_CONFLICT      ? AP_LOG_DEBUG
                           : err == AP_ERR_UNAVAILABLE ? AP_LOG_WARN
                                                       : AP_LOG_ERROR;
    ap_log(level, "pg", "%s: %s%s%s%s", what, line, state ? " (SQLSTATE " : "",
           state ? state : "", state ? ")" : "");
    return err;
}

ap_err_t ap_pg_exec(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType status = PQresultStatus(res); /* PGRES_FATAL_ERROR for NULL */
    ap_err_t err = AP_OK;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
        err = ap_pg_fail(conn, res, what);
    PQclear(res);
    return err;
}

bool ap_pg_get_int64(const PGresult *res, int row, int col, int64_t *out)
{
    if (PQgetisnull(res, row, col))
        return false;
    const char *text = PQgetvalue(res, row, col);
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || end == text || *end)
        return false;
    *out = (int64_t)value;
    return true;
}

/* ---------------------------------------------------------------- statements */

/*
 * Savepoint statements not sent yet. The scope functions queue them and the next statement
 * that goes to the server sends them first, in the same pipeline. The queue always reads
 * "RELEASE ..., then SAVEPOINT ..." and its SAVEPOINTs are exactly the open scopes the
 * server has not heard of, which is what lets a commit or rollback of such a scope just
 * drop its SAVEPOINT from the queue.
 */
#define MAX_PENDING 1024
#define MAX_NAMED 8

typedef struct pending pending_t;

typedef struct pg_uow {
    ap_uow_t uow;   /* first: the port (container_of) */
    PGconn *conn;   /* NULL while disconnected */
    char *conninfo; /* kept for reconnecting; never logged */
    bool prepared;  /* the statements below exist on `conn` */
    bool broken;    /* the session is in doubt: drop it at the next outermost begin */
    bool doomed;    /* a deferred write failed: only the outermost rollback is left */
    pending_t *pending; /* statements not sent yet, in order */
    size_t npending, pending_cap;
    /* Other adapters' statements (ap_pg_uow_command), prepared on first use; known by the
     * address of their text, which is a constant of theirs. */
    struct {
        const char *sql;
        bool prepared; /* on `conn` */
    } named[MAX_NAMED];
    size_t nnamed;
} pg_uow_t;

enum stmt {
    ST_LOAD_SKU,
    ST_LOAD_REF,
    ST_LOAD_MANY,
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

/* A product with its batches and their lines, in creation and allocation (id) order, in one
 * round trip. Columns: 0 sku, 1 version, 2 batch id, 3 ref, 4 purchased qty, 5 eta as days
 * since 1970-01-01, 6 orderid, 7 line qty; 2-7 are NULL for a product without batches,
 * 6-7 for a batch without lines. */
#define LOAD_PRODUCT                                                                    \
    "SELECT p.sku, p.version_number, b.id, b.reference, b.purchased_quantity,"          \
    "       b.eta - date '1970-01-01', a.orderid, a.qty"                                \
    "  FROM products p"                                                                 \
    "  LEFT JOIN batches b ON b.sku = p.sku"                                            \
    "  LEFT JOIN allocations a ON a.batch_id = b.id"

static const struct {
    const char *name;
    const char *sql;
} stmts[ST__COUNT] = {
    [ST_LOAD_SKU] = {"ap_load_sku", LOAD_PRODUCT " WHERE p.sku = $1::text ORDER BY b.id, a.id"},
    [ST_LOAD_REF] = {"ap_load_ref", LOAD_PRODUCT " WHERE p.sku = (SELECT sku FROM batches"
                                    " WHERE reference = $1::text) ORDER BY b.id, a.id"},
    /* Many products in input order, with the batches and lines of only those whose version
     * is not the one the caller holds ($2, -1 for none). Same columns as LOAD_PRODUCT. */
    [ST_LOAD_MANY] = {"ap_load_many",
                      "SELECT p.sku, p.version_number, x.id, x.reference,"
                      "       x.purchased_quantity, x.eta_days, x.orderid, x.qty"
                      "  FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY"
                      "       AS w(sku, known, ord)"
                      "  JOIN products p ON p.sku = w.sku"
                      "  LEFT JOIN LATERAL ("
                      "    SELECT b.id, b.reference, b.purchased_quantity,"
                      "           b.eta - date '1970-01-01' AS eta_days, a.orderid, a.qty,"
                      "           a.id AS line_id"
                      "      FROM batches b LEFT JOIN allocations a ON a.batch_id = b.id"
                      "     WHERE b.sku = p.sku AND p.version_number <> w.known) x ON true"
                      " ORDER BY w.ord, x.id, x.line_id"},
    /* A new product: zero rows means someone created it first (a conflict). */
    [ST_PRODUCT_INSERT] = {"ap_product_insert",
                           "INSERT INTO products (sku, version_number)"
                           " VALUES ($1::text, $2::bigint) ON CONFLICT DO NOTHING"},
    /* The optimistic-concurrency check: zero rows means the stored version moved on. */
    [ST_PRODUCT_CAS] = {"ap_product_cas",
                        "UPDATE products SET version_number = $3::bigint"
                        " WHERE sku = $1::text AND version_number = $2::bigint"},
    [ST_BATCH_INSERT] = {"ap_batch_insert",
                         "INSERT INTO batches (reference, sku, purchased_quantity, eta)"
                         " VALUES ($1::text, $2::text, $3::bigint,"
                         "         date '1970-01-01' + $4::integer)"},
    [ST_BATCH_SET_QTY] = {"ap_batch_set_qty",
                          "UPDATE batches SET purchased_quantity = $2::bigint"
                          " WHERE reference = $1::text"},
    [ST_LINE_ADD] = {"ap_line_add",
                     "INSERT INTO allocations (batch_id, orderid, qty)"
                     " SELECT id, $2::text, $3::bigint FROM batches WHERE reference = $1::text"},
    /* Deallocation takes back the newest matching line. */
    [ST_LINE_REMOVE] = {"ap_line_remove",
                        "DELETE FROM allocations WHERE id = ("
                        " SELECT a.id FROM allocations a JOIN batches b ON b.id = a.batch_id"
                        "  WHERE b.reference = $1::text AND a.orderid = $2::text"
                        "    AND a.qty = $3::bigint ORDER BY a.id DESC LIMIT 1)"},
    [ST_VIEW_ADD] = {"ap_view_add",
                     "INSERT INTO allocations_view (orderid, sku, batchref)"
                     " VALUES ($1::text, $2::text, $3::text)"},
    [ST_VIEW_REMOVE] = {"ap_view_remove",
                        "DELETE FROM allocations_view WHERE id = ("
                        " SELECT id FROM allocations_view WHERE orderid = $1::text"
                        "    AND sku = $2::text AND batchref = $3::text"
                        "  ORDER BY id DESC LIMIT 1)"},
    [ST_CLAIM] = {"ap_claim",
                  "INSERT INTO consumer_offsets AS o"
                  "   (group_id, topic, partition, next_offset, owner_epoch)"
                  " VALUES ($1::text, $2::text, $3::integer, -1, 1)"
                  " ON CONFLICT (group_id, topic, partition) DO UPDATE"
                  "   SET owner_epoch = o.owner_epoch + 1, updated_at = now()"
                  " RETURNING owner_epoch, next_offset"},
    /* Fencing: only the latest claimant, from the offset it expects. */
    [ST_ADVANCE] = {"ap_advance",
                    "UPDATE consumer_offsets SET next_offset = $6::bigint, updated_at = now()"
                    " WHERE group_id = $1::text AND topic = $2::text AND partition = $3::integer"
                    "   AND owner_epoch = $4::bigint AND next_offset = $5::bigint"},
    /* Arrays in, rows in array order (ids keep the allocation order). */
    [ST_PRODUCT_INSERT_MANY] = {"ap_product_insert_many",
                                "INSERT INTO products (sku, version_number)"
                                " SELECT * FROM unnest($1::text[], $2::bigint[])"
                                " ON CONFLICT DO NOTHING"},
    [ST_PRODUCT_CAS_MANY] = {"ap_product_cas_many",
                             "UPDATE products p SET version_number = u.new"
                             "  FROM unnest($1::text[], $2::bigint[], $3::bigint[])"
                             "       AS u(sku, old, new)"
                             " WHERE p.sku = u.sku AND p.version_number = u.old"},
    [ST_LINE_ADD_MANY] = {"ap_line_add_many",
                          "INSERT INTO allocations (batch_id, orderid, qty)"
                          " SELECT b.id, u.orderid, u.qty"
                          "   FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY"
                          "        AS u(ref, orderid, qty, ord)"
                          "   JOIN batches b ON b.reference = u.ref"
                          "  ORDER BY u.ord"},
    [ST_VIEW_ADD_MANY] = {"ap_view_add_many",
                          "INSERT INTO allocations_view (orderid, sku, batchref)"
                          " SELECT u.orderid, u.sku, u.batchref"
                          "   FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY"
                          "        AS u(orderid, sku, batchref, ord)"
                          "  ORDER BY u.ord"},
};

static const char *fmt_int(char buf[AP_PG_INT_SIZE], int64_t value)
{
    snprintf(buf, AP_PG_INT_SIZE, "%" PRId64, value);
    return buf;
}

/* Remembers that the session is in doubt after a failure that may have lost it. */
static ap_err_t note(pg_uow_t *self, ap_err_t err)
{
    if (err == AP_ERR_UNAVAILABLE || !self->conn || PQstatus(self->conn) != CONNECTION_OK)
        self->broken = true;
    return err;
}

static ap_err_t usable(const pg_uow_t *self)
{
    if (self->doomed)
        return AP_ERR_CONFLICT;
    return self->conn && !self->broken ? AP_OK : AP_ERR_UNAVAILABLE;
}

char *ap_pg_text_array(const char *const *items, size_t n)
{
    size_t len = 3;
    for (size_t i = 0; i < n; i++)
        len += items[i] ? 2 * strlen(items[i]) + 3 : 5;
    char *out = malloc(len), *p = out;
    if (!out)
        return NULL;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            *p++ = ',';
        if (!items[i]) {
            memcpy(p, "NULL", 4);
            p += 4;
            continue;
        }
        *p++ = '"';
        for (const char *c = items[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                *p++ = '\\';
            *p++ = *c;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

char *ap_pg_int_array(const int64_t *items, size_t n)
{
    size_t len = 3 + n * (AP_PG_INT_SIZE + 1);
    char *out = malloc(len), *p = out;
    if (!out)
        return NULL;
    *p++ = '{';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, i > 0 ? ",%" PRId64 : "%" PRId64, items[i]);
    *p++ = '}';
    *p = '\0';
    return out;
}

/*
 * The name `sql` is prepared under on this connection, preparing it on first use; false
 * (and the statement goes unnamed) when it cannot be: too many, or the server refused.
 * Only outside pipeline mode.
 */
static bool named_statement(pg_uow_t *self, const char *sql, char name[16])
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

/* ---------------------------------------------------------------- pipelines */

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

/* Records a failure; only the first is logged, the rest would be its echoes. */
static void pipe_fail(pipe_t *pipe, const PGresult *res, const char *what)
{
    if (pipe->err == AP_OK)
        pipe->err = note(pipe->self, ap_pg_fail(pipe->self->conn, res, what));
    else
        (void)note(pipe->self, pipe->err);
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
 * can follow. Callers see a conflict, which makes the owner of the transaction retry it.
 */
static void doom_if_deferred(pipe_t *pipe, size_t i)
{
    if (!pipe->sent[i].deferred || pipe->err == AP_ERR_UNAVAILABLE)
        return;
    AP_DEBUG("pg", "a deferred %s failed: the transaction will be retried", pipe->sent[i].what);
    pipe->self->doomed = true;
    pipe->self->uow.doomed = true;
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

static void pipe_send(pipe_t *pipe, enum stmt st, expect_t expect, const char *key, int nparams,
                      const char *const *params)
{
    if (pipe->err)
        return;
    int sent = PQsendQueryPrepared(pipe->self->conn, stmts[st].name, nparams, params, NULL, NULL,
                                   0);
    pipe_sent(pipe, sent, stmts[st].name, key, expect, 1);
}

/* A statement prepared by name, with PQexecParams's arguments; it must touch `rows` rows. */
static void pipe_send_named(pipe_t *pipe, const char *name, expect_t expect, long rows,
                            int nparams, const char *const *params, const int *lengths,
                            const int *formats)
{
    if (pipe->err)
        return;
    int sent = PQsendQueryPrepared(pipe->self->conn, name, nparams, params, lengths, formats, 0);
    pipe_sent(pipe, sent, name, NULL, expect, rows);
}

/* The same for a statement that is not prepared (the unnamed statement). */
static void pipe_send_sql(pipe_t *pipe, const char *what, const char *sql, expect_t expect,
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
        pipe_send(pipe, p->st, p->expect, p->key, p->nparams, params);
    else if (p->name[0])
        pipe_send_named(pipe, p->name, p->expect, 1, p->nparams, params, p->lengths,
                        p->formats);
    else
        pipe_send_sql(pipe, "deferred command", p->sql, p->expect, p->nparams, params,
                      p->lengths, p->formats);
}

/* Sends a statement prepared as `name` over arrays: parameter c of row r is cols[c][r]. Every
 * row must touch one row of the table (when `expect` counts rows). */
static void send_many(pipe_t *pipe, const char *name, expect_t expect, size_t nrows, int ncols,
                      const char **const *cols)
{
    char *arrays[MAX_PARAMS] = {NULL};
    bool ok = true;
    for (int c = 0; c < ncols; c++)
        ok = ok && (arrays[c] = ap_pg_text_array(cols[c], nrows));
    if (ok)
        pipe_send_named(pipe, name, expect, (long)nrows, ncols, (const char *const *)arrays,
                        NULL, NULL);
    else if (pipe->err == AP_OK)
        pipe->err = AP_ERR_NOMEM;
    for (int c = 0; c < ncols; c++)
        free(arrays[c]);
}

char *ap_pg_bytea_hex(const void *value, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *bytes = value;
    char *out;
    if (!value || !(out = malloc(2 * len + 3)))
        return NULL;
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < len; i++) {
        out[2 + 2 * i] = digits[bytes[i] >> 4];
        out[3 + 2 * i] = digits[bytes[i] & 15];
    }
    out[2 + 2 * len] = '\0';
    return out;
}

/* The name of a queued statement's many-row form (same parameters, each an array), or NULL. */
static const char *many_form(const pending_t *p)
{
    switch (p->st) {
    case ST_LINE_ADD:
        return stmts[ST_LINE_ADD_MANY].name;
    case ST_VIEW_ADD:
        return stmts[ST_VIEW_ADD_MANY].name;
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
 * parameters as they are, binary ones, which are bytea, in hex), the rest one by one, in
 * queue order. `scratch` has room for MAX_PARAMS * n pointers.
 */
static void send_runs(pipe_t *pipe, const pending_t *const *items, size_t n,
                      const char **scratch)
{
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
        bool ok = true;
        for (int c = 0; c < p->nparams; c++) {
            cols[c] = scratch + (size_t)c * n;
            for (size_t r = 0; r < nrows; r++) {
                const pending_t *q = items[i + r];
                cols[c][r] = q->formats[c] && q->params[c]
                                 ? ap_pg_bytea_hex(q->params[c], (size_t)q->lengths[c])
                                 : q->params[c];
                ok = ok && (cols[c][r] || !q->params[c]);
            }
        }
        if (ok)
            send_many(pipe, many, p->expect, nrows, p->nparams, (const char **const *)cols);
        else if (pipe->err == AP_OK)
            pipe->err = AP_ERR_NOMEM;
        for (int c = 0; c < p->nparams; c++) {
            for (size_t r = 0; r < nrows; r++) {
                if (cols[c][r] != items[i + r]->params[c])
                    free((char *)cols[c][r]);
            }
        }
        i = end;
    }
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
    size_t nrows = 0;
    bool ok = insert != NULL;

    for (size_t i = 0; i < n && ok; i++) {
        const pending_t *p = items[i];
        size_t j = 0;
        while (j < nrows && strcmp(sku[j], p->params[0]) != 0)
            j++;
        if (j == nrows) {
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
            send_many(pipe, stmts[st].name, EXPECT_VERSION, m, pass == 0 ? 2 : 3, cols);
    }
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

/* Forgets the queued statements from `at` on. */
static void pending_clear(pg_uow_t *self, size_t at)
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

/* Removes one queued statement, keeping the order of the others. */
static void pending_clear_one(pg_uow_t *self, size_t at)
{
    pending_t removed = self->pending[at];
    memmove(&self->pending[at], &self->pending[at + 1],
            (self->npending - at - 1) * sizeof removed);
    self->pending[self->npending - 1] = removed;
    pending_clear(self, self->npending - 1);
}

/* Enters pipeline mode and sends the queued statements first. */
static void pipe_open(pipe_t *pipe, pg_uow_t *self)
{
    memset(pipe, 0, sizeof *pipe);
    pipe->self = self;
    if ((pipe->err = usable(self)))
        return;
    if (!PQenterPipelineMode(self->conn)) {
        pipe_lost(pipe, NULL, "pipeline");
        return;
    }
    pipe->open = true;
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
        pipe_send_sql(pipe, p->kind == PENDING_RELEASE ? "release savepoint" : "savepoint", sql,
                      EXPECT_DONE, 0, NULL, NULL, NULL);
        i++;
    }
    pipe->sending_queue = false;
    pending_clear(self, 0);
}

/* Syncs what is left and leaves pipeline mode; returns the first failure. */
static ap_err_t pipe_close(pipe_t *pipe)
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

/* Sends the pending savepoint statements on their own (the queue is full). */
static ap_err_t flush_pending(pg_uow_t *self)
{
    pipe_t pipe;
    pipe_open(&pipe, self);
    return pipe_close(&pipe);
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

/*
 * Runs a statement; on success *out holds the result (caller clears). With savepoint
 * statements pending, they go first in a pipeline: still one round trip.
 */
static ap_err_t run(pg_uow_t *self, const stmt_call_t *call, ExecStatusType want,
                    PGresult **out)
{
    enum stmt st = call->st;
    int nparams = call->nparams;
    const char *const *params = call->params;
    const char *what = st == ST__COUNT ? "command" : stmts[st].name;
    PGresult *res;
    ap_err_t err = usable(self);

    if (err)
        return err;
    if (self->npending > 0) {
        pipe_t pipe;
        pipe_open(&pipe, self);
        pipe.want = want;
        if (st == ST__COUNT)
            pipe_send_sql(&pipe, what, call->sql, EXPECT_KEEP, nparams, params, call->lengths,
                          call->formats);
        else
            pipe_send(&pipe, st, EXPECT_KEEP, NULL, nparams, params);
        if ((err = pipe_close(&pipe)))
            return err;
        assert(pipe.kept);
        *out = pipe.kept;
        return AP_OK;
    }
    char name[16];
    if (st == ST__COUNT && named_statement(self, call->sql, name))
        res = PQexecPrepared(self->conn, name, nparams, params, call->lengths, call->formats, 0);
    else if (st == ST__COUNT)
        res = PQexecParams(self->conn, call->sql, nparams, NULL, params, call->lengths,
                           call->formats, 0);
    else
        res = PQexecPrepared(self->conn, stmts[st].name, nparams, params, NULL, NULL, 0);
    if (PQresultStatus(res) != want) {
        err = note(self, ap_pg_fail(self->conn, res, what));
        PQclear(res);
        return err;
    }
    *out = res;
    return AP_OK;
}

static ap_err_t query(pg_uow_t *self, enum stmt st, int nparams, const char *const *params,
                      ExecStatusType want, PGresult **out)
{
    const stmt_call_t call = {.st = st, .nparams = nparams, .params = params};
    return run(self, &call, want, out);
}

/* Runs a prepared command and returns how many rows it touched. */
static ap_err_t command(pg_uow_t *self, enum stmt st, int nparams, const char *const *params,
                        long *rows)
{
    PGresult *res = NULL;
    ap_err_t err = query(self, st, nparams, params, PGRES_COMMAND_OK, &res);
    if (err)
        return err;
    *rows = strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return AP_OK;
}

/* Runs a transaction-control command; the scope functions empty the queue before. */
static ap_err_t exec(pg_uow_t *self, const char *sql, const char *what)
{
    assert(self->npending == 0);
    ap_err_t err = usable(self);
    if (err)
        return err;
    return note(self, ap_pg_exec(self->conn, sql, what));
}

/* ---------------------------------------------------------------- sessions and scopes */

static ap_err_t prepare_all(pg_uow_t *self)
{
    ap_err_t err = AP_OK;
    for (int i = 0; i < ST__COUNT && err == AP_OK; i++) {
        PGresult *res = PQprepare(self->conn, stmts[i].name, stmts[i].sql, 0, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            err = note(self, ap_pg_fail(self->conn, res, stmts[i].name));
        PQclear(res);
    }
    self->prepared = err == AP_OK;
    return err;
}

/* A fresh connection, with a fresh set of prepared statements. */
static ap_err_t reconnect(pg_uow_t *self)
{
    if (self->conn) {
        AP_INFO("pg", "reconnecting");
        PQfinish(self->conn);
    }
    self->prepared = false;
    self->broken = false;
    for (size_t i = 0; i < self->nnamed; i++)
        self->named[i].prepared = false;
    pending_clear(self, 0);
    self->conn = ap_pg_connect(self->conninfo);
    if (!self->conn)
        return AP_ERR_UNAVAILABLE;
    return prepare_all(self);
}

/* Before an outermost begin: a live, idle session with our statements prepared. */
static ap_err_t ready_session(pg_uow_t *self)
{
    PGconn *conn = self->conn;
    bool healthy = conn && !self->broken && PQstatus(conn) == CONNECTION_OK &&
                   PQpipelineStatus(conn) == PQ_PIPELINE_OFF;

    pending_clear(self, 0);
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
static ap_err_t queue_slot(pg_uow_t *self, pending_t **out)
{
    ap_err_t err;
    if (self->npending == MAX_PENDING && (err = flush_pending(self)))
        return err;
    if (self->npending == self->pending_cap) {
        size_t ncap = self->pending_cap ? self->pending_cap * 2 : 64;
        pending_t *grown = realloc(self->pending, ncap * sizeof *grown);
        if (!grown)
            return AP_ERR_NOMEM;
        self->pending = grown;
        self->pending_cap = ncap;
    }
    *out = &self->pending[self->npending];
    memset(*out, 0, sizeof **out);
    return AP_OK;
}

static ap_err_t queue_savepoint(pg_uow_t *self, bool release, unsigned level)
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

/* Queues a write to be sent with the next statement that needs an answer (or the commit). */
static ap_err_t queue_stmt(pg_uow_t *self, enum stmt st, const char *sql, const char *many_sql,
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
    if (sql && named_statement(self, sql, p->name))
        sql = NULL; /* sent by name */
    if (many_sql && !named_statement(self, many_sql, p->many))
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
        pending_clear(self, self->npending - 1);
        return AP_ERR_NOMEM;
    }
    return AP_OK;
}

/* True when a write was deferred and not sent yet. */
static bool writes_pending(const pg_uow_t *self)
{
    for (size_t i = 0; i < self->npending; i++) {
        if (self->pending[i].kind == PENDING_STMT)
            return true;
    }
    return false;
}

/* Where scope `level`'s SAVEPOINT waits in the queue, or -1 when the server has it. */
static long pending_savepoint(const pg_uow_t *self, unsigned level)
{
    for (size_t i = self->npending; i-- > 0;) {
        if (self->pending[i].kind == PENDING_SAVEPOINT && self->pending[i].level == level)
            return (long)i;
    }
    return -1;
}

static ap_err_t pg_begin(ap_uow_t *uow)
{
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    ap_err_t err;

    /* Inside a transaction: a savepoint named after the level it opens, sent lazily. */
    if (uow->depth > 0) {
        if ((err = usable(self)))
            return err;
        return queue_savepoint(self, false, uow->depth + 1);
    }
    if ((err = ready_session(self)))
        return err;
    err = exec(self, "BEGIN ISOLATION LEVEL READ COMMITTED", "begin");
    if (err == AP_ERR_UNAVAILABLE) {
        /* The server dropped an idle connection (restart, failover, idle timeout): nothing
         * was lost yet, so try once more on a new one. */
        if ((err = reconnect(self)))
            return err;
        err = exec(self, "BEGIN ISOLATION LEVEL READ COMMITTED", "begin");
    }
    return err;
}

static void pg_rollback(ap_uow_t *uow)
{
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    unsigned level = uow->depth;
    char sql[80];

    /* A doomed transaction has only its outermost rollback left to do. */
    if (self->doomed) {
        pending_clear(self, 0);
        if (level <= 1) {
            if (!self->conn || ap_pg_exec(self->conn, "ROLLBACK", "rollback"))
                self->broken = true;
            self->doomed = false;
            uow->doomed = false;
        }
        return;
    }
    /* A lost connection took its transaction with it; begin will reconnect. */
    if (usable(self) != AP_OK || PQstatus(self->conn) != CONNECTION_OK) {
        self->broken = true;
        pending_clear(self, 0);
        return;
    }
    /* A savepoint the server never saw: forget it and everything queued after it. */
    long at = level > 1 ? pending_savepoint(self, level) : -1;
    if (at >= 0) {
        pending_clear(self, (size_t)at);
        return;
    }
    /* Everything still queued belongs to this scope, which goes anyway. */
    pending_clear(self, 0);
    if (level <= 1)
        snprintf(sql, sizeof sql, "ROLLBACK");
    else
        snprintf(sql, sizeof sql, "ROLLBACK TO SAVEPOINT s%u; RELEASE SAVEPOINT s%u", level,
                 level);
    /* If even this fails the session is in doubt: start the next transaction afresh. */
    if (exec(self, sql, "rollback"))
        self->broken = true;
}

/* ---------------------------------------------------------------- repository: load */

/* A stored row that the model refuses (or a broken query): a bug or manual tampering. */
static ap_err_t bad_row(const char *what, int row)
{
    AP_ERROR("pg", "%s: row %d does not fit the model", what, row);
    return AP_ERR_INTERNAL;
}

/* Rebuilds one product from rows [first, end) of a LOAD_PRODUCT result. */
static ap_err_t restore_rows(const PGresult *res, int first, int end, const char *what,
                             ap_product_t **out)
{
    ap_product_t *product = NULL;
    ap_batch_t *batch = NULL;
    int64_t batch_id = 0, version, value;
    ap_err_t err = AP_OK;

    if (PQnfields(res) != 8 || !ap_pg_get_int64(res, first, 1, &version))
        return bad_row(what, first);
    if (!(product = ap_product_restore(PQgetvalue(res, first, 0), version)))
        return AP_ERR_NOMEM;
    for (int row = first; row < end; row++) {
        if (PQgetisnull(res, row, 2))
            continue; /* a product without batches */
        int64_t id, qty, eta = 0;
        if (!ap_pg_get_int64(res, row, 2, &id)) {
            err = bad_row(what, row);
            goto out;
        }
        if (!batch || id != batch_id) {
            bool has_eta = !PQgetisnull(res, row, 5);
            if (!ap_pg_get_int64(res, row, 4, &qty) ||
                (has_eta && (!ap_pg_get_int64(res, row, 5, &eta) || eta < INT32_MIN ||
                             eta > INT32_MAX))) {
                err = bad_row(what, row);
                goto out;
            }
            err = ap_product_restore_batch(product, PQgetvalue(res, row, 3), qty, has_eta,
                                           (int32_t)eta, &batch);
            if (err) {
                err = err == AP_ERR_NOMEM ? err : bad_row(what, row);
                goto out;
            }
            batch_id = id;
        }
        if (PQgetisnull(res, row, 6))
            continue; /* a batch without lines */
        if (!ap_pg_get_int64(res, row, 7, &value)) {
            err = bad_row(what, row);
            goto out;
        }
        if ((err = ap_product_restore_line(batch, PQgetvalue(res, row, 6), value))) {
            err = err == AP_ERR_NOMEM ? err : bad_row(what, row);
            goto out;
        }
    }
    *out = product;
    product = NULL;
out:
    ap_product_free(product);
    return err;
}

static ap_err_t load(pg_uow_t *self, enum stmt st, const char *key, ap_product_t **out)
{
    const char *params[1] = {key};
    PGresult *res = NULL;
    ap_err_t err = query(self, st, 1, params, PGRES_TUPLES_OK, &res);
    if (err == AP_OK && PQntuples(res) == 0)
        err = AP_ERR_NOT_FOUND;
    if (err == AP_OK)
        err = restore_rows(res, 0, PQntuples(res), stmts[st].name, out);
    PQclear(res);
    return err;
}

/* Many products in one round trip: rows come grouped by sku, in the order asked. */
static ap_err_t pg_load_many(ap_uow_t *uow, const char *const *skus, const int64_t *known,
                             size_t n, int64_t *stored, ap_product_t **out)
{
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    char *sku_array = ap_pg_text_array(skus, n), *known_array = ap_pg_int_array(known, n);
    const char *params[2] = {sku_array, known_array};
    const char *what = stmts[ST_LOAD_MANY].name;
    PGresult *res = NULL;
    ap_err_t err = sku_array && known_array
                       ? query(self, ST_LOAD_MANY, 2, params, PGRES_TUPLES_OK, &res)
                       : AP_ERR_NOMEM;

    for (size_t i = 0; i < n; i++) {
        stored[i] = -1;
        out[i] = NULL;
    }
    size_t i = 0;
    for (int first = 0, nrows = err ? 0 : PQntuples(res); first < nrows && !err;) {
        const char *sku = PQgetvalue(res, first, 0);
        int end = first + 1;
        while (end < nrows && strcmp(PQgetvalue(res, end, 0), sku) == 0)
            end++;
        while (i < n && strcmp(skus[i], sku) != 0)
            i++;
        if (i == n || !ap_pg_get_int64(res, first, 1, &stored[i])) {
            err = bad_row(what, first);
            break;
        }
        if (stored[i] != known[i])
            err = restore_rows(res, first, end, what, &out[i]);
        i++;
        first = end;
    }
    if (err) {
        for (size_t j = 0; j < n; j++) {
            ap_product_free(out[j]);
            out[j] = NULL;
        }
    }
    PQclear(res);
    free(sku_array);
    free(known_array);
    return err;
}

static ap_err_t pg_load(ap_uow_t *uow, const char *sku, ap_product_t **out)
{
    return load(container_of(uow, pg_uow_t, uow), ST_LOAD_SKU, sku, out);
}

static ap_err_t pg_load_by_batchref(ap_uow_t *uow, const char *ref, ap_product_t **out)
{
    return load(container_of(uow, pg_uow_t, uow), ST_LOAD_REF, ref, out);
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
        pipe_send(e->pipe, st, expect, key, nparams, params);
    else if (e->err == AP_OK)
        e->err = queue_stmt(e->self, st, NULL, NULL, expect, key, nparams, params, NULL, NULL);
}

/* The version check, then the recorded changes in order. */
static void send_product(emitter_t *pipe, const ap_product_t *product)
{
    char version[AP_PG_INT_SIZE], stored[AP_PG_INT_SIZE], qty[AP_PG_INT_SIZE];
    char eta[AP_PG_INT_SIZE];

    fmt_int(version, product->version_number);
    if (product->is_new) {
        const char *params[] = {product->sku, version};
        emit(pipe, ST_PRODUCT_INSERT, EXPECT_VERSION, product->sku, 2, params);
    } else {
        const char *params[] = {product->sku, fmt_int(stored, product->stored_version), version};
        emit(pipe, ST_PRODUCT_CAS, EXPECT_VERSION, product->sku, 3, params);
    }
    for (size_t i = 0; i < product->nchanges; i++) {
        const ap_change_t *change = &product->changes[i];
        const ap_batch_t *batch = &product->batches[change->batch];
        switch (change->kind) {
        case AP_CHANGE_ADD_BATCH: {
            const char *params[] = {batch->ref, batch->sku, fmt_int(qty, batch->purchased_qty),
                                    batch->has_eta ? fmt_int(eta, batch->eta) : NULL};
            emit(pipe, ST_BATCH_INSERT, EXPECT_ONE_ROW, batch->ref, 4, params);
            break;
        }
        case AP_CHANGE_SET_QTY: {
            const char *params[] = {batch->ref, fmt_int(qty, batch->purchased_qty)};
            emit(pipe, ST_BATCH_SET_QTY, EXPECT_ONE_ROW, batch->ref, 2, params);
            break;
        }
        case AP_CHANGE_ADD_LINE:
        case AP_CHANGE_REMOVE_LINE: {
            const char *params[] = {batch->ref, change->line.orderid,
                                    fmt_int(qty, change->line.qty)};
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
        pipe_open(&pipe, self);
        e.pipe = &pipe;
    }
    for (size_t i = 0; i < uow->nseen && !e.err && !(e.pipe && pipe.err); i++) {
        if (needs_write(uow->seen[i]))
            send_product(&e, uow->seen[i]);
    }
    return e.pipe ? pipe_close(&pipe) : e.err;
}

/* COMMIT of a transaction that had already failed answers ROLLBACK, not an error. */
static ap_err_t commit_transaction(pg_uow_t *self)
{
    PGresult *res = PQexec(self->conn, "COMMIT");
    ap_err_t err = AP_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        err = note(self, ap_pg_fail(self->conn, res, "commit"));
    } else if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        AP_ERROR("pg", "commit: the transaction had failed earlier and was rolled back");
        err = AP_ERR_INTERNAL;
    }
    PQclear(res);
    return err;
}

static ap_err_t pg_commit(ap_uow_t *uow)
{
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    unsigned level = uow->depth;
    ap_err_t err;

    if ((err = usable(self)) || (err = write_products(self)))
        return err;
    if (level > 1) {
        /* A scope the server never heard of needs no RELEASE, and its SAVEPOINT can go: on
         * success the writes queued after it belong to the parent scope just the same. */
        long at = pending_savepoint(self, level);
        if (at >= 0) {
            pending_clear_one(self, (size_t)at);
        } else if ((err = queue_savepoint(self, true, level))) {
            return err;
        }
    } else {
        /* COMMIT ends every savepoint: queued RELEASEs have nothing left to do, but deferred
         * writes go first. */
        if (writes_pending(self) && (err = flush_pending(self)))
            return err;
        pending_clear(self, 0);
        if ((err = usable(self)) || (err = commit_transaction(self)))
            return err;
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
    ap_err_t err = usable(self);
    if (err)
        return err;
    if (uow->defer_writes && uow->depth > 0)
        return queue_stmt(self, st, sql, many_sql, EXPECT_DONE, NULL, nparams, params, lengths,
                          formats);
    const stmt_call_t call = {st, sql, nparams, params, lengths, formats};
    if ((err = run(self, &call, PGRES_COMMAND_OK, &res)))
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
    const char *params[] = {group, topic, fmt_int(part, partition)};
    PGresult *res = NULL;
    int64_t claimed, next;
    ap_err_t err;

    if ((err = query(self, ST_CLAIM, 3, params, PGRES_TUPLES_OK, &res)))
        goto out;
    if (PQntuples(res) != 1 || !ap_pg_get_int64(res, 0, 0, &claimed) ||
        !ap_pg_get_int64(res, 0, 1, &next)) {
        err = bad_row(stmts[ST_CLAIM].name, 0);
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
                            fmt_int(part, partition),
                            fmt_int(ep, epoch),
                            fmt_int(from, expected),
                            fmt_int(to, next)};
    long rows;
    ap_err_t err = command(self, ST_ADVANCE, 6, params, &rows);
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
    pending_clear(self, 0);
    free(self->pending);
    PQfinish(self->conn);
    free(self->conninfo);
    free(self);
}

static const struct ap_uow_ops pg_uow_ops = {
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .load = pg_load,
    .load_by_batchref = pg_load_by_batchref,
    .load_many = pg_load_many,
    .view_add = pg_view_add,
    .view_remove = pg_view_remove,
    .claim_partition = pg_claim_partition,
    .advance_offset = pg_advance_offset,
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
    err = run(container_of(uow, pg_uow_t, uow), &call, PGRES_COMMAND_OK, &res);
    if (err)
        return err;
    if (rows)
        *rows = strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return AP_OK;
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
    return run(container_of(uow, pg_uow_t, uow), &call, PGRES_TUPLES_OK, out);
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
    if (self) {
        PQfinish(self->conn);
        free(self->conninfo);
        free(self);
    }
    return err;
}
