/*
 * pg_outbox_reader.c - the relay's side of the outbox table on PostgreSQL (outbox_reader.h):
 * the relay lock, LISTEN/NOTIFY, reading the oldest rows and deleting delivered ones.
 *
 * Rows are read with binary results, so bytea keys, values and header values arrive as the
 * bytes they are (no escaping to undo) and SQL NULL is told apart from empty. The two array
 * columns are decoded from PostgreSQL's binary array format here. This file does not decide
 * when to read, what to send or what to delete: the relay loop does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/pg_internal.h"
#include "ap/array.h"
#include "ap/log.h"
#include "ap/outbox_reader.h"

/* pg_try_advisory_lock key of the relay: one active relay per database. */
#define RELAY_LOCK_KEY "4271539116603450391"

/* The relay session's prepared statements, by what they do. */
enum { FETCH, DELETE, PARK };
const ap_pg_prepared_t ap_pg_outbox_reader_statements[] = {
    [FETCH] = {"ap_outbox_reader_fetch",
               "SELECT id, event_id::text, topic, key, value, header_names, header_values, "
               "       (extract(epoch FROM created_at) * 1000)::bigint "
               "FROM outbox ORDER BY id LIMIT $1"},
    [DELETE] = {"ap_outbox_reader_delete", "DELETE FROM outbox WHERE id = ANY($1::bigint[])"},
    [PARK] = {"ap_outbox_reader_park",
              "WITH moved AS (DELETE FROM outbox WHERE id = $1::bigint RETURNING *) "
              "INSERT INTO outbox_parked (id, event_id, topic, key, value, header_names,"
              "                           header_values, created_at, reason) "
              "SELECT id, event_id, topic, key, value, header_names, header_values, created_at, $2 "
              "  FROM moved"},
    {NULL, NULL},
};

/* Result columns of FETCH. */
enum { COL_ID, COL_EVENT_ID, COL_TOPIC, COL_KEY, COL_VALUE, COL_NAMES, COL_VALUES, COL_CREATED,
       NCOLS };

struct ap_outbox_reader {
    ap_pg_conn_t session;
    PGresult *res;  /* the last fetch's rows point into it */
    ap_outbox_row_t *rows;
    size_t rows_cap;
    ap_header_t *headers; /* every row's headers, back to back */
    size_t headers_cap;
    PGconn *vacuum_checked; /* the session whose right to vacuum was checked ... */
    bool may_vacuum;        /* ... and the answer */
};

ap_outbox_reader_t *ap_pg_outbox_reader_new(const char *conninfo)
{
    ap_outbox_reader_t *reader = calloc(1, sizeof *reader);
    if (!reader)
        return NULL;
    if (ap_pg_conn_init(&reader->session, conninfo)) {
        free(reader);
        return NULL;
    }
    return reader;
}

void ap_outbox_reader_disconnect(ap_outbox_reader_t *reader)
{
    ap_pg_conn_close(&reader->session);
}

void ap_outbox_reader_free(ap_outbox_reader_t *reader)
{
    if (!reader)
        return;
    PQclear(reader->res);
    free(reader->rows);
    free(reader->headers);
    ap_pg_conn_release(&reader->session);
    free(reader);
}

bool ap_outbox_reader_connected(ap_outbox_reader_t *reader)
{
    return ap_pg_conn_connected(&reader->session);
}

/* The relay's deletes need not wait for the WAL flush: one lost in a server crash only brings
 * delivered rows back, and they are sent again with the same event-id, which the contract
 * allows after a crash. That halves the fsyncs a steady stream costs. The processor's own
 * transactions keep the server's synchronous_commit. */
static const char *const reader_commands[] = {"SET synchronous_commit TO off", NULL};
static const ap_pg_conn_setup_t reader_setup = {"relay session", reader_commands,
                                                ap_pg_outbox_reader_statements};

ap_err_t ap_outbox_reader_connect(ap_outbox_reader_t *reader)
{
    return ap_pg_conn_open(&reader->session, &reader_setup);
}

/*
 * A read-only session (default_transaction_read_only, a standby) could send rows but not
 * delete them: each retry would send them again. It is closed instead, so the next one sees
 * the server writable again (a per-database setting reaches new sessions only).
 */
static ap_err_t refuse_read_only(ap_outbox_reader_t *reader)
{
    if (!ap_pg_read_only(reader->session.conn))
        return AP_OK;
    ap_pg_note_fault(AP_FAULT_READ_ONLY);
    AP_DEBUG("relay", "the database session is read-only: not relaying until it can write");
    ap_outbox_reader_disconnect(reader);
    return AP_ERR_UNAVAILABLE;
}

ap_err_t ap_outbox_reader_try_lock(ap_outbox_reader_t *reader, bool *leader)
{
    ap_err_t err;
    if (!reader->session.conn)
        return AP_ERR_UNAVAILABLE;
    if ((err = refuse_read_only(reader)))
        return err;
    PGresult *res = PQexec(reader->session.conn, "SELECT pg_try_advisory_lock(" RELAY_LOCK_KEY ")");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        err = ap_pg_conn_fail(&reader->session, res, "relay lock");
        PQclear(res);
        return err;
    }
    bool got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    /* Listen only as the leader: a waiting replica has nothing to do with notifications. */
    if (got && (err = ap_pg_exec(reader->session.conn, "LISTEN " AP_PG_CHANNEL_OUTBOX, "listen"))) {
        ap_outbox_reader_disconnect(reader);
        return err;
    }
    *leader = got;
    return AP_OK;
}

/* ---------------------------------------------------------------- binary decoding */

typedef struct reader {
    const unsigned char *p, *end;
} reader_t;

static bool read_i32(reader_t *r, int32_t *out)
{
    if (r->end - r->p < 4)
        return false;
    uint32_t v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 |
                 (uint32_t)r->p[3];
    r->p += 4;
    *out = (int32_t)v;
    return true;
}

/*
 * Walks a one-or-more-dimensional array in PostgreSQL's binary format (ndim, has-nulls flag,
 * element type, ndim x (size, lower bound), then per element a length, -1 for NULL, and the
 * bytes), in storage order. Calls `each` with a NULL pointer for NULL elements. Returns the
 * element count, or -1 when the bytes are not such an array.
 */
typedef void (*element_fn)(ap_header_t *header, const void *data, size_t len);

static long walk_array(const char *data, int len, ap_header_t *headers, size_t cap,
                       element_fn each)
{
    reader_t r = {(const unsigned char *)data, (const unsigned char *)data + len};
    int32_t ndim, flags, elemtype;
    long count = 1;

    if (!read_i32(&r, &ndim) || !read_i32(&r, &flags) || !read_i32(&r, &elemtype) || ndim < 0 ||
        ndim > 6)
        return -1;
    if (ndim == 0)
        return 0;
    for (int32_t d = 0; d < ndim; d++) {
        int32_t size, lbound;
        if (!read_i32(&r, &size) || !read_i32(&r, &lbound) || size < 0)
            return -1;
        count *= size;
        if (count > (long)cap)
            return -1;
    }
    for (long i = 0; i < count; i++) {
        int32_t elen;
        if (!read_i32(&r, &elen) || elen < -1 || r.end - r.p < elen)
            return -1;
        if (headers)
            each(&headers[i], elen < 0 ? NULL : r.p, elen < 0 ? 0 : (size_t)elen);
        if (elen > 0)
            r.p += elen;
    }
    return r.p == r.end ? count : -1;
}

static void set_name(ap_header_t *header, const void *data, size_t len)
{
    /* A NULL name cannot be sent; an empty one can. */
    header->name = data ? data : "";
    header->name_len = len;
}

static void set_value(ap_header_t *header, const void *data, size_t len)
{
    /* An empty bytea still gets a non-NULL pointer, so it stays empty rather than null. */
    header->value = data;
    header->value_len = len;
}

static bool get_int8(const PGresult *res, int row, int col, int64_t *out)
{
    if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 8)
        return false;
    const unsigned char *p = (const unsigned char *)PQgetvalue(res, row, col);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    *out = (int64_t)v;
    return true;
}

/* Fills reader->rows from reader->res. */
static ap_err_t decode_rows(ap_outbox_reader_t *reader, size_t *nrows)
{
    const PGresult *res = reader->res;
    int n = PQntuples(res);
    size_t nheaders = 0;

    if (PQnfields(res) != NCOLS) {
        AP_ERROR("pg", "outbox fetch: %d columns, expected %d", PQnfields(res), NCOLS);
        return AP_ERR_INTERNAL;
    }
    if (!AP_ARRAY_RESERVE(reader->rows, reader->rows_cap, (size_t)n))
        return AP_ERR_NOMEM;
    /* Count first, so the header array is sized once and row pointers into it stay valid. */
    for (int i = 0; i < n; i++) {
        long count = walk_array(PQgetvalue(res, i, COL_NAMES), PQgetlength(res, i, COL_NAMES),
                                NULL, 1L << 20, NULL);
        if (count < 0) {
            AP_ERROR("pg", "outbox row %s: header_names is not a text array",
                     PQgetvalue(res, i, COL_ID));
            return AP_ERR_DECODE;
        }
        nheaders += (size_t)count;
    }
    if (!AP_ARRAY_RESERVE(reader->headers, reader->headers_cap, nheaders))
        return AP_ERR_NOMEM;

    ap_header_t *next = reader->headers;
    for (int i = 0; i < n; i++) {
        ap_outbox_row_t *row = &reader->rows[i];
        size_t room = nheaders - (size_t)(next - reader->headers);
        if (!get_int8(res, i, COL_ID, &row->id)) {
            AP_ERROR("pg", "outbox fetch: row %d has no id", i);
            return AP_ERR_DECODE;
        }
        /* Binary text is the text itself, and libpq ends every value with a NUL. */
        row->event_id = PQgetvalue(res, i, COL_EVENT_ID);
        if (!get_int8(res, i, COL_CREATED, &row->created_ms))
            row->created_ms = 0;
        row->topic = PQgetvalue(res, i, COL_TOPIC);
        row->key = PQgetisnull(res, i, COL_KEY) ? NULL : PQgetvalue(res, i, COL_KEY);
        row->key_len = (size_t)PQgetlength(res, i, COL_KEY);
        row->value = PQgetisnull(res, i, COL_VALUE) ? NULL : PQgetvalue(res, i, COL_VALUE);
        row->value_len = (size_t)PQgetlength(res, i, COL_VALUE);
        long names = walk_array(PQgetvalue(res, i, COL_NAMES), PQgetlength(res, i, COL_NAMES),
                                next, room, set_name);
        long values = walk_array(PQgetvalue(res, i, COL_VALUES), PQgetlength(res, i, COL_VALUES),
                                 next, room, set_value);
        if (names < 0 || values != names) {
            AP_ERROR("pg", "outbox row %lld: header_values does not match header_names",
                     (long long)row->id);
            return AP_ERR_DECODE;
        }
        row->headers = next;
        row->nheaders = (size_t)names;
        next += names;
    }
    *nrows = (size_t)n;
    return AP_OK;
}

ap_err_t ap_outbox_reader_fetch(ap_outbox_reader_t *reader, size_t limit,
                                const ap_outbox_row_t **rows, size_t *nrows)
{
    char limit_text[AP_PG_INT_SIZE];
    const char *params[] = {limit_text};
    size_t n = 0;
    ap_err_t err;

    PQclear(reader->res);
    reader->res = NULL;
    if (!reader->session.conn)
        return AP_ERR_UNAVAILABLE;
    snprintf(limit_text, sizeof limit_text, "%zu", limit);
    reader->res = PQexecPrepared(reader->session.conn, ap_pg_outbox_reader_statements[FETCH].name,
                                 1, params, NULL, NULL, 1);
    if (PQresultStatus(reader->res) != PGRES_TUPLES_OK)
        return ap_pg_conn_fail(&reader->session, reader->res, "outbox fetch");
    if ((err = refuse_read_only(reader)) || (err = decode_rows(reader, &n)))
        return err;
    *rows = reader->rows;
    *nrows = n;
    return AP_OK;
}

ap_err_t ap_outbox_reader_delete(ap_outbox_reader_t *reader, const int64_t *ids, size_t nids,
                                 size_t *deleted)
{
    if (nids == 0) {
        if (deleted)
            *deleted = 0;
        return AP_OK;
    }
    if (!reader->session.conn)
        return AP_ERR_UNAVAILABLE;
    char *id_array = ap_pg_int_array(ids, nids);
    if (!id_array)
        return AP_ERR_NOMEM;
    const char *params[] = {id_array};
    PGresult *res = PQexecPrepared(reader->session.conn,
                                   ap_pg_outbox_reader_statements[DELETE].name, 1, params, NULL,
                                   NULL, 0);
    free(id_array);
    ap_err_t err = AP_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        err = ap_pg_conn_fail(&reader->session, res, "outbox delete");
    else if (deleted)
        *deleted = (size_t)strtoul(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return err;
}

/* Whether this session's role may vacuum the outbox: in PostgreSQL 15, its owner (or a member
 * of the owning role), the database's owner, or a superuser (who has every role). */
static ap_err_t check_vacuum_right(ap_outbox_reader_t *reader)
{
    PGconn *conn = reader->session.conn;
    if (reader->vacuum_checked == conn)
        return AP_OK;
    PGresult *res = PQexec(conn, "SELECT pg_has_role(c.relowner, 'USAGE') OR pg_has_role(d.datdba, 'USAGE')"
                                 "  FROM pg_class c, pg_database d"
                                 " WHERE c.oid = 'outbox'::regclass AND d.datname = current_database()");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        ap_err_t err = ap_pg_conn_fail(&reader->session, res, "outbox vacuum right");
        PQclear(res);
        return err;
    }
    reader->may_vacuum = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    reader->vacuum_checked = conn;
    PQclear(res);
    if (!reader->may_vacuum)
        AP_INFO("relay", "this role may not vacuum the outbox: autovacuum alone removes the "
                         "rows the relay deleted, and reading the outbox slows until it does");
    return AP_OK;
}

ap_err_t ap_outbox_reader_vacuum(ap_outbox_reader_t *reader, bool *done)
{
    *done = false;
    if (!reader->session.conn)
        return AP_ERR_UNAVAILABLE;
    ap_err_t err = check_vacuum_right(reader);
    if (err || !reader->may_vacuum)
        return err;
    /* SKIP_LOCKED: another vacuum of the table at work already does the job. */
    PGresult *res = PQexec(reader->session.conn, "VACUUM (SKIP_LOCKED, TRUNCATE false) outbox");
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        err = ap_pg_conn_fail(&reader->session, res, "outbox vacuum");
    else
        *done = true;
    PQclear(res);
    return err;
}

ap_err_t ap_outbox_reader_park(ap_outbox_reader_t *reader, int64_t id, const char *reason)
{
    char id_text[AP_PG_INT_SIZE];
    if (!reader->session.conn)
        return AP_ERR_UNAVAILABLE;
    snprintf(id_text, sizeof id_text, "%lld", (long long)id);
    const char *params[] = {id_text, reason};
    PGresult *res = PQexecPrepared(reader->session.conn,
                                   ap_pg_outbox_reader_statements[PARK].name, 2, params, NULL,
                                   NULL, 0);
    ap_err_t err = AP_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        err = ap_pg_conn_fail(&reader->session, res, "outbox park");
    PQclear(res);
    return err;
}

ap_err_t ap_outbox_reader_wait(ap_outbox_reader_t *reader, int timeout_ms, bool *notified)
{
    return ap_pg_conn_wait(&reader->session, timeout_ms, "outbox listen", notified);
}
