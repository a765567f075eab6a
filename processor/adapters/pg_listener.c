/*
 * pg_listener.c - a PostgreSQL session of its own that LISTENs between statements
 * (pg_internal.h): what the outbox relay and the email queue share. Opening, closing when a
 * failure makes the session untrustworthy, and waiting for a notification with poll.
 *
 * It knows no table and no channel: its users LISTEN and prepare what they need.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/pg_internal.h"
#include "ap/log.h"

ap_err_t ap_pg_listener_init(ap_pg_listener_t *listener, const char *conninfo)
{
    listener->conn = NULL;
    listener->conninfo = strdup(conninfo);
    return listener->conninfo ? AP_OK : AP_ERR_NOMEM;
}

void ap_pg_listener_release(ap_pg_listener_t *listener)
{
    ap_pg_listener_close(listener);
    free(listener->conninfo);
    listener->conninfo = NULL;
}

bool ap_pg_listener_connected(const ap_pg_listener_t *listener)
{
    return listener->conn && PQstatus(listener->conn) == CONNECTION_OK;
}

ap_err_t ap_pg_listener_open(ap_pg_listener_t *listener)
{
    ap_pg_listener_close(listener);
    listener->conn = ap_pg_connect(listener->conninfo);
    return listener->conn ? AP_OK : AP_ERR_UNAVAILABLE;
}

void ap_pg_listener_close(ap_pg_listener_t *listener)
{
    if (listener->conn)
        PQfinish(listener->conn);
    listener->conn = NULL;
}

ap_err_t ap_pg_listener_fail(ap_pg_listener_t *listener, const PGresult *res, const char *what)
{
    ap_err_t err = ap_pg_fail(listener->conn, res, what);
    if (err == AP_ERR_UNAVAILABLE || !ap_pg_listener_connected(listener))
        ap_pg_listener_close(listener);
    return err == AP_ERR_CONFLICT ? AP_ERR_INTERNAL : err;
}

ap_err_t ap_pg_listener_prepare(ap_pg_listener_t *listener, const char *name, const char *sql)
{
    PGresult *res = PQprepare(listener->conn, name, sql, 0, NULL);
    ap_err_t err = AP_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        err = ap_pg_listener_fail(listener, res, "prepare");
    PQclear(res);
    return err;
}

ap_err_t ap_pg_listener_exec(ap_pg_listener_t *listener, const char *sql, const char *what)
{
    ap_err_t err = ap_pg_exec(listener->conn, sql, what);
    if (err && !ap_pg_listener_connected(listener))
        ap_pg_listener_close(listener);
    return err;
}

/* The socket failed under us: whatever libpq says, the session is gone. */
static ap_err_t lost(ap_pg_listener_t *listener, const char *what)
{
    (void)ap_pg_fail(listener->conn, NULL, what);
    ap_pg_listener_close(listener);
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

ap_err_t ap_pg_listener_wait(ap_pg_listener_t *listener, int timeout_ms, const char *what,
                             bool *notified)
{
    bool any = false;
    if (!listener->conn)
        return AP_ERR_UNAVAILABLE;
    /* Notifications read while a query's result was being read are already queued. */
    if (!PQconsumeInput(listener->conn))
        return lost(listener, what);
    if (!(any = drain_notifications(listener->conn))) {
        struct pollfd pfd = {.fd = PQsocket(listener->conn), .events = POLLIN};
        if (pfd.fd < 0)
            return lost(listener, what);
        int ready = poll(&pfd, 1, timeout_ms);
        if (ready < 0 && errno != EINTR) {
            AP_WARN("pg", "%s: poll: %s", what, strerror(errno));
            ready = 0;
        }
        if (ready > 0 && !PQconsumeInput(listener->conn))
            return lost(listener, what);
        any = drain_notifications(listener->conn);
    }
    if (notified)
        *notified = any;
    return AP_OK;
}
