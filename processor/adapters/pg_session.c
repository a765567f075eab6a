/*
 * pg_session.c - what every PostgreSQL adapter needs around libpq (pg_internal.h):
 * connecting with our defaults, turning a failure into one log line and an ap_err_t,
 * running a parameterless command, reading a bigint column, and the text forms of arrays
 * and bytea that many-row statements take.
 *
 * It knows no table: the unit of work, the outbox, the relay, the views and the migrations
 * build on it. Its one piece of state is per thread, like errno: the fault of the thread's
 * last failure (ap/pg.h), and the last line logged, so a loop retrying the same failure
 * says it once a minute rather than at every attempt.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "adapters/pg_internal.h"
#include "ap/denial.h"
#include "ap/log.h"
#include "ap/pg.h"
#include "ap/strbuf.h"

/* A failure logged at warn level again within this long is logged at debug level. */
#define REPEAT_QUIET_MS 60000

static _Thread_local ap_fault_t thread_fault;
static _Thread_local char thread_logged[512];
static _Thread_local int64_t thread_logged_ms;

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ap_fault_t ap_pg_thread_fault(void)
{
    return thread_fault;
}

void ap_pg_note_fault(ap_fault_t fault)
{
    thread_fault = fault;
}

bool ap_pg_read_only(const PGconn *conn)
{
    /* Reported by the server (PostgreSQL 14 and later) at connect time and whenever a reload
     * changes them: no query needed. */
    const char *read_only = PQparameterStatus(conn, "default_transaction_read_only");
    const char *standby = PQparameterStatus(conn, "in_hot_standby");
    return (read_only && strcmp(read_only, "on") == 0) || (standby && strcmp(standby, "on") == 0);
}

/* ---------------------------------------------------------------- connections and errors */

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
        /* A refusal (password, certificate) is said once, at ERROR, and /readyz repeats it;
         * plain unreachability is a warning at each attempt, as before. */
        ap_denial_cause_t cause = ap_denial_classify_pg(PQerrorMessage(conn));
        if (cause != AP_DENIAL_NONE)
            ap_denial_report(AP_SERVICE_POSTGRES, cause, PQerrorMessage(conn));
        else
            (void)ap_pg_fail(conn, NULL, "connect");
        PQfinish(conn);
        return NULL;
    }
    ap_denial_clear(AP_SERVICE_POSTGRES);
    PQsetNoticeProcessor(conn, notice_to_log, NULL);
    /* Every statement of ours is a probe or a write by key, well under a millisecond. A
     * plan made before a table's first ANALYZE can be estimated costly enough for the JIT
     * compiler, which then spends 5-25 ms compiling it at every execution: measured on an
     * order lookup over a million lines not analyzed yet. */
    PGresult *res = PQexec(conn, "SET jit = off");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        (void)ap_pg_fail(conn, res, "connect");
        PQclear(res);
        PQfinish(conn);
        return NULL;
    }
    PQclear(res);
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

    ap_fault_t fault = AP_FAULT_NONE;
    if (sqlstate_is(state, "40001") || sqlstate_is(state, "40P01") ||
        sqlstate_is(state, "23505")) {
        err = AP_ERR_CONFLICT;
    } else if (sqlstate_is(state, "25006")) {
        /* read_only_sql_transaction: default_transaction_read_only, or a standby. It passes
         * once the server writes again; the session is dropped so a new one sees that. */
        err = AP_ERR_UNAVAILABLE;
        fault = AP_FAULT_READ_ONLY;
    } else if (sqlstate_is(state, "53300") || strstr(text, "too many connections") ||
               strstr(text, "too many clients")) {
        /* too_many_connections; at connect time libpq has no SQLSTATE, only the text. */
        err = AP_ERR_UNAVAILABLE;
        fault = AP_FAULT_CONNECTION_LIMIT;
    } else if (sqlstate_is(state, "53")) {
        err = AP_ERR_UNAVAILABLE; /* insufficient resources: disk full, out of memory */
        fault = AP_FAULT_NO_RESOURCES;
    } else if (!conn || PQstatus(conn) != CONNECTION_OK || sqlstate_is(state, "08") ||
               sqlstate_is(state, "57P")) {
        err = AP_ERR_UNAVAILABLE;
        fault = AP_FAULT_UNREACHABLE;
    } else {
        err = AP_ERR_INTERNAL;
    }
    if (err == AP_ERR_UNAVAILABLE)
        thread_fault = fault;

    /* One line: libpq's text spans several (DETAIL, HINT, "server closed ..."). */
    char line[512];
    ap_log_one_line(text, line, sizeof line);

    ap_log_level_t level = err == AP_ERR_CONFLICT      ? AP_LOG_DEBUG
                           : err == AP_ERR_UNAVAILABLE ? AP_LOG_WARN
                                                       : AP_LOG_ERROR;
    if (level == AP_LOG_WARN) {
        /* A loop retrying through an outage meets the same failure again and again. */
        int64_t now = monotonic_ms();
        if (strcmp(line, thread_logged) == 0 && now - thread_logged_ms < REPEAT_QUIET_MS) {
            level = AP_LOG_DEBUG;
        } else {
            snprintf(thread_logged, sizeof thread_logged, "%s", line);
            thread_logged_ms = now;
        }
    }
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

/* ---------------------------------------------------------------- array literals */

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

/* Appends `v` in network byte order, as the binary formats want. */
static void add_be32(ap_strbuf_t *sb, uint32_t v)
{
    const char bytes[4] = {(char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v};
    ap_strbuf_add(sb, bytes, sizeof bytes);
}

char *ap_pg_binary_array(unsigned elem_oid, const char *const *items, const int *lengths,
                         size_t n, int *len)
{
    /* ndim, has-nulls flag (set below once a NULL is seen), element type; then the one
     * dimension's size and lower bound; then each element. */
    enum { NULLS_FLAG_BYTE = 7 };
    ap_strbuf_t sb = AP_STRBUF_INIT;
    bool nulls = false;
    add_be32(&sb, n ? 1 : 0);
    add_be32(&sb, 0);
    add_be32(&sb, elem_oid);
    if (n) {
        add_be32(&sb, (uint32_t)n);
        add_be32(&sb, 1);
    }
    for (size_t i = 0; i < n; i++) {
        if (!items[i]) {
            nulls = true;
            add_be32(&sb, UINT32_MAX); /* -1: NULL */
            continue;
        }
        size_t item_len = lengths ? (size_t)lengths[i] : strlen(items[i]);
        add_be32(&sb, (uint32_t)item_len);
        ap_strbuf_add(&sb, items[i], item_len);
    }
    if (sb.failed || sb.len > 0x3fffffff) { /* a parameter's length is an int */
        free(ap_strbuf_detach(&sb));
        return NULL;
    }
    if (nulls)
        sb.buf[NULLS_FLAG_BYTE] = 1;
    *len = (int)sb.len;
    return ap_strbuf_detach(&sb);
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

