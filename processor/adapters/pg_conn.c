/*
 * pg_conn.c - a PostgreSQL connection of its own that reconnects on demand (pg_internal.h):
 * what the outbox relay, the email queue, the read-model views and the command-outcome
 * lookups share. Opening it with its settings and prepared statements, closing it when a
 * failure makes it untrustworthy, and waiting for a notification with poll.
 *
 * It knows no table and no channel: its users pass the statements they need. The unit of
 * work keeps a connection of its own (pg_uow.c): it pipelines, which this one never does.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/pg_internal.h"
#include "ap/log.h"

ap_err_t ap_pg_conn_init(ap_pg_conn_t *pc, const char *conninfo)
{
    pc->conn = NULL;
    pc->conninfo = strdup(conninfo);
    return pc->conninfo ? AP_OK : AP_ERR_NOMEM;
}

void ap_pg_conn_release(ap_pg_conn_t *pc)
{
    ap_pg_conn_close(pc);
    free(pc->conninfo);
    pc->conninfo = NULL;
}

bool ap_pg_conn_connected(const ap_pg_conn_t *pc)
{
    return pc->conn && PQstatus(pc->conn) == CONNECTION_OK;
}

ap_err_t ap_pg_conn_open(ap_pg_conn_t *pc, const ap_pg_conn_setup_t *setup)
{
    ap_err_t err = AP_OK;
    if (ap_pg_conn_connected(pc))
        return AP_OK;
    if (pc->conn)
        AP_INFO("pg", "%s: reconnecting", setup ? setup->what : "session");
    ap_pg_conn_close(pc);
    if (!(pc->conn = ap_pg_connect(pc->conninfo)))
        return AP_ERR_UNAVAILABLE;
    if (!setup)
        return AP_OK;
    for (const char *const *sql = setup->commands; !err && sql && *sql; sql++)
        err = ap_pg_conn_exec(pc, *sql, setup->what);
    for (const ap_pg_prepared_t *st = setup->prepared; !err && st && st->name; st++)
        err = ap_pg_conn_prepare(pc, st->name, st->sql);
    if (err)
        ap_pg_conn_close(pc);
    return err;
}

void ap_pg_conn_close(ap_pg_conn_t *pc)
{
    if (pc->conn)
        PQfinish(pc->conn);
    pc->conn = NULL;
}

ap_err_t ap_pg_conn_fail(ap_pg_conn_t *pc, const PGresult *res, const char *what)
{
    ap_err_t err = ap_pg_fail(pc->conn, res, what);
    if (err == AP_ERR_UNAVAILABLE || !ap_pg_conn_connected(pc))
        ap_pg_conn_close(pc);
    return err == AP_ERR_CONFLICT ? AP_ERR_INTERNAL : err;
}

ap_err_t ap_pg_conn_prepare(ap_pg_conn_t *pc, const char *name, const char *sql)
{
    PGresult *res = PQprepare(pc->conn, name, sql, 0, NULL);
    ap_err_t err = AP_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        err = ap_pg_conn_fail(pc, res, "prepare");
    PQclear(res);
    return err;
}

ap_err_t ap_pg_conn_exec(ap_pg_conn_t *pc, const char *sql, const char *what)
{
    ap_err_t err = ap_pg_exec(pc->conn, sql, what);
    if (err && !ap_pg_conn_connected(pc))
        ap_pg_conn_close(pc);
    return err;
}

/* The socket failed under us: whatever libpq says, the session is gone. */
static ap_err_t lost(ap_pg_conn_t *pc, const char *what)
{
    (void)ap_pg_fail(pc->conn, NULL, what);
    ap_pg_conn_close(pc);
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

ap_err_t ap_pg_conn_wait(ap_pg_conn_t *pc, int timeout_ms, const char *what,
                             bool *notified)
{
    bool any = false;
    if (!pc->conn)
        return AP_ERR_UNAVAILABLE;
    /* Notifications read while a query's result was being read are already queued. */
    if (!PQconsumeInput(pc->conn))
        return lost(pc, what);
    if (!(any = drain_notifications(pc->conn))) {
        struct pollfd pfd = {.fd = PQsocket(pc->conn), .events = POLLIN};
        if (pfd.fd < 0)
            return lost(pc, what);
        int ready = poll(&pfd, 1, timeout_ms);
        if (ready < 0 && errno != EINTR) {
            AP_WARN("pg", "%s: poll: %s", what, strerror(errno));
            ready = 0;
        }
        if (ready > 0 && !PQconsumeInput(pc->conn))
            return lost(pc, what);
        any = drain_notifications(pc->conn);
    }
    if (notified)
        *notified = any;
    return AP_OK;
}
