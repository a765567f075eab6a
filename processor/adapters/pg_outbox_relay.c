/*
 * pg_outbox_relay.c - the relay's side of the outbox table on PostgreSQL (outbox_relay.h):
 * the relay lock, LISTEN/NOTIFY, reading the oldest rows and deleting delivered ones.
 *
 * Rows are read with binary results, so bytea keys, values and header values arrive as the
 * bytes they are (no escaping to undo) and SQL NULL is told apart from empty. The two array
 * columns are decoded from PostgreSQL's binary array format here. This file does not decide
 * when to read, what to send or what to delete: the relay loop does.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/pg_internal.h"
#include "ap/array.h"
#include "ap/log.h"
#include "ap/outbox_relay.h"

/* pg_try_advisory_lock key of the relay: one active relay per database. */
#define RELAY_LOCK_KEY "4271539116603450391"

#define FETCH_STMT "ap_outbox_relay_fetch"
#define DELETE_STMT "ap_outbox_relay_delete"
#define PARK_STMT "ap_outbox_relay_park"

static const char fetch_sql[] =
    "SELECT id, event_id::text, topic, key, value, header_names, header_values, "
    "       (extract(epoch FROM created_at) * 1000)::bigint "
    "FROM outbox ORDER BY id LIMIT $1";
static const char delete_sql[] = "DELETE FROM outbox WHERE id = ANY($1::bigint[])";
static const char park_sql[] =
    "WITH moved AS (DELETE FROM outbox WHERE id = $1::bigint RETURNING *) "
    "INSERT INTO outbox_parked (id, event_id, topic, key, value, header_names, header_values,"
    "                           created_at, reason) "
    "SELECT id, event_id, topic, key, value, header_names, header_values, created_at, $2 "
    "  FROM moved";

/* Result columns of fetch_sql. */
enum { COL_ID, COL_EVENT_ID, COL_TOPIC, COL_KEY, COL_VALUE, COL_NAMES, COL_VALUES, COL_CREATED,
       NCOLS };

struct ap_outbox_relay {
    char *conninfo; /* never logged */
    PGconn *conn;   /* NULL while disconnected */
    PGresult *res;  /* the last fetch's rows point into it */
    ap_outbox_row_t *rows;
    size_t rows_cap;
    ap_kafka_header_t *headers; /* every row's headers, back to back */
    size_t headers_cap;
};

ap_outbox_relay_t *ap_pg_outbox_relay_new(const char *conninfo)
{
    ap_outbox_relay_t *relay = calloc(1, sizeof *relay);
    if (!relay)
        return NULL;
    relay->conninfo = strdup(conninfo);
    if (!relay->conninfo) {
        free(relay);
        return NULL;
    }
    return relay;
}

void ap_outbox_relay_disconnect(ap_outbox_relay_t *relay)
{
    if (relay->conn)
        PQfinish(relay->conn);
    relay->conn = NULL;
}

void ap_outbox_relay_free(ap_outbox_relay_t *relay)
{
    if (!relay)
        return;
    ap_outbox_relay_disconnect(relay);
    PQclear(relay->res);
    free(relay->rows);
    free(relay->headers);
    free(relay->conninfo);
    free(relay);
}

bool ap_outbox_relay_connected(ap_outbox_relay_t *relay)
{
    return relay->conn && PQstatus(relay->conn) == CONNECTION_OK;
}

/* Maps and logs a failure; a session we can no longer trust is closed (and its lock with it). */
static ap_err_t fail(ap_outbox_relay_t *relay, const PGresult *res, const char *what)
{
    ap_err_t err = ap_pg_fail(relay->conn, res, what);
    if (err == AP_ERR_UNAVAILABLE || !ap_outbox_relay_connected(relay))
        ap_outbox_relay_disconnect(relay);
    return err == AP_ERR_CONFLICT ? AP_ERR_INTERNAL : err;
}

static ap_err_t prepare(ap_outbox_relay_t *relay, const char *name, const char *sql)
{
    PGresult *res = PQprepare(relay->conn, name, sql, 0, NULL);
    ap_err_t err = AP_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        err = fail(relay, res, "prepare");
    PQclear(res);
    return err;
}

ap_err_t ap_outbox_relay_connect(ap_outbox_relay_t *relay)
{
    ap_err_t err;
    if (ap_outbox_relay_connected(relay))
        return AP_OK;
    ap_outbox_relay_disconnect(relay);
    relay->conn = ap_pg_connect(relay->conninfo);
    if (!relay->conn)
        return AP_ERR_UNAVAILABLE;
    /* The relay's deletes need not wait for the WAL flush: one lost in a server crash only
     * brings delivered rows back, and they are sent again with the same event-id, which the
     * contract allows after a crash. That halves the fsyncs a steady stream costs. The
     * processor's own transactions keep the server's synchronous_commit. */
    if ((err = ap_pg_exec(relay->conn, "SET synchronous_commit TO off", "relay session")) ||
        (err = prepare(relay, FETCH_STMT, fetch_sql)) ||
        (err = prepare(relay, DELETE_STMT, delete_sql)) ||
        (err = prepare(relay, PARK_STMT, park_sql))) {
        ap_outbox_relay_disconnect(relay);
        return err;
    }
    return AP_OK;
}

ap_err_t ap_outbox_relay_try_lock(ap_outbox_relay_t *relay, bool *leader)
{
    if (!relay->conn)
        return AP_ERR_UNAVAILABLE;
    PGresult *res = PQexec(relay->conn, "SELECT pg_try_advisory_lock(" RELAY_LOCK_KEY ")");
    ap_err_t err = AP_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        err = fail(relay, res, "relay lock");
        PQclear(res);
        return err;
    }
    bool got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    /* Listen only as the leader: a waiting replica has nothing to do with notifications. */
    if (got && (err = ap_pg_exec(relay->conn, "LISTEN outbox", "listen"))) {
        ap_outbox_relay_disconnect(relay);
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
typedef void (*element_fn)(ap_kafka_header_t *header, const void *data, size_t len);

static long walk_array(const char *data, int len, ap_kafka_header_t *headers, size_t cap,
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

static void set_name(ap_kafka_header_t *header, const void *data, size_t len)
{
    /* A NULL name cannot be sent; an empty one can. */
    header->name = data ? data : "";
    header->name_len = len;
}

static void set_value(ap_kafka_header_t *header, const void *data, size_t len)
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

/* Fills relay->rows from relay->res. */
static ap_err_t decode_rows(ap_outbox_relay_t *relay, size_t *nrows)
{
    const PGresult *res = relay->res;
    int n = PQntuples(res);
    size_t nheaders = 0;

    if (PQnfields(res) != NCOLS) {
        AP_ERROR("pg", "outbox fetch: %d columns, expected %d", PQnfields(res), NCOLS);
        return AP_ERR_INTERNAL;
    }
    if (!AP_ARRAY_RESERVE(relay->rows, relay->rows_cap, (size_t)n))
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
    if (!AP_ARRAY_RESERVE(relay->headers, relay->headers_cap, nheaders))
        return AP_ERR_NOMEM;

    ap_kafka_header_t *next = relay->headers;
    for (int i = 0; i < n; i++) {
        ap_outbox_row_t *row = &relay->rows[i];
        size_t room = nheaders - (size_t)(next - relay->headers);
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

ap_err_t ap_outbox_relay_fetch(ap_outbox_relay_t *relay, size_t limit,
                               const ap_outbox_row_t **rows, size_t *nrows)
{
    char limit_text[AP_PG_INT_SIZE];
    const char *params[] = {limit_text};
    size_t n = 0;
    ap_err_t err;

    PQclear(relay->res);
    relay->res = NULL;
    if (!relay->conn)
        return AP_ERR_UNAVAILABLE;
    snprintf(limit_text, sizeof limit_text, "%zu", limit);
    relay->res = PQexecPrepared(relay->conn, FETCH_STMT, 1, params, NULL, NULL, 1);
    if (PQresultStatus(relay->res) != PGRES_TUPLES_OK)
        return fail(relay, relay->res, "outbox fetch");
    if ((err = decode_rows(relay, &n)))
        return err;
    *rows = relay->rows;
    *nrows = n;
    return AP_OK;
}

ap_err_t ap_outbox_relay_delete(ap_outbox_relay_t *relay, const int64_t *ids, size_t nids,
                                size_t *deleted)
{
    if (nids == 0) {
        if (deleted)
            *deleted = 0;
        return AP_OK;
    }
    if (!relay->conn)
        return AP_ERR_UNAVAILABLE;
    char *id_array = ap_pg_int_array(ids, nids);
    if (!id_array)
        return AP_ERR_NOMEM;
    const char *params[] = {id_array};
    PGresult *res = PQexecPrepared(relay->conn, DELETE_STMT, 1, params, NULL, NULL, 0);
    free(id_array);
    ap_err_t err = AP_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        err = fail(relay, res, "outbox delete");
    else if (deleted)
        *deleted = (size_t)strtoul(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return err;
}

ap_err_t ap_outbox_relay_park(ap_outbox_relay_t *relay, int64_t id, const char *reason)
{
    char id_text[AP_PG_INT_SIZE];
    if (!relay->conn)
        return AP_ERR_UNAVAILABLE;
    snprintf(id_text, sizeof id_text, "%lld", (long long)id);
    const char *params[] = {id_text, reason};
    PGresult *res = PQexecPrepared(relay->conn, PARK_STMT, 2, params, NULL, NULL, 0);
    ap_err_t err = AP_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        err = fail(relay, res, "outbox park");
    PQclear(res);
    return err;
}

/* The socket failed under us: whatever libpq says, the session is gone. */
static ap_err_t lost(ap_outbox_relay_t *relay, const char *what)
{
    (void)ap_pg_fail(relay->conn, NULL, what);
    ap_outbox_relay_disconnect(relay);
    return AP_ERR_UNAVAILABLE;
}

/* Consumes every notification libpq has read; true when there was one. */
static bool drain_notifications(PGconn *conn)
{
    bool any = false;
    PGnotify *note;
    while ((note = PQnotifies(conn))) {
        any = true;
        PQfreemem(note);
    }
    return any;
}

ap_err_t ap_outbox_relay_wait(ap_outbox_relay_t *relay, int timeout_ms, bool *notified)
{
    if (!relay->conn)
        return AP_ERR_UNAVAILABLE;
    /* Notifications read while a query's result was being read are already queued. */
    if (!PQconsumeInput(relay->conn))
        return lost(relay, "outbox listen");
    if (drain_notifications(relay->conn)) {
        *notified = true;
        return AP_OK;
    }
    struct pollfd pfd = {.fd = PQsocket(relay->conn), .events = POLLIN};
    if (pfd.fd < 0)
        return lost(relay, "outbox listen");
    int ready = poll(&pfd, 1, timeout_ms);
    if (ready < 0 && errno != EINTR) {
        AP_WARN("pg", "outbox listen: poll: %s", strerror(errno));
        ready = 0;
    }
    if (ready > 0 && !PQconsumeInput(relay->conn))
        return lost(relay, "outbox listen");
    *notified = drain_notifications(relay->conn);
    return AP_OK;
}
