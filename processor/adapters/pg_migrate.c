/*
 * pg_migrate.c - applies the SQL migrations compiled into the program (schemas/sql/, see
 * migrations.h) that the database has not seen yet.
 *
 * Each migration runs in its own transaction together with the row that records it in
 * schema_migrations, so it is applied entirely or not at all. A session advisory lock
 * serialises concurrent runs (two replicas starting at once): the second waits, then finds
 * nothing left to do. Not a schema-diff tool: migrations are append-only files, and an
 * applied one is never looked at again.
 */
#include <stdbool.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "adapters/migrations.h"
#include "adapters/pg_internal.h"
#include "ap/log.h"
#include "ap/pg.h"

/* Any fixed 64-bit number no other program on the database uses: "apmigrat" in ASCII. */
#define MIGRATE_LOCK_KEY "7021232118545146228"

/* The bookkeeping table belongs to the migrator itself, not to a migration. */
static const char create_bookkeeping_sql[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " name text PRIMARY KEY,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

/* Whether migration `name` is recorded as applied. */
static ap_err_t is_applied(PGconn *conn, const char *name, bool *applied)
{
    const char *params[] = {name};
    PGresult *res = PQexecParams(conn, "SELECT 1 FROM schema_migrations WHERE name = $1::text",
                                 1, NULL, params, NULL, NULL, 0);
    ap_err_t err = AP_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        err = ap_pg_fail(conn, res, "schema_migrations");
    else
        *applied = PQntuples(res) > 0;
    PQclear(res);
    return err;
}

/* One migration and its bookkeeping row, in one transaction. */
static ap_err_t apply(PGconn *conn, const ap_migration_t *migration)
{
    const char *params[] = {migration->name};
    PGresult *res = NULL;
    ap_err_t err;

    if ((err = ap_pg_exec(conn, "BEGIN", "begin")))
        goto out;
    /* The file may hold several statements: the simple query protocol runs them all. */
    if ((err = ap_pg_exec(conn, migration->sql, migration->name)))
        goto out;
    res = PQexecParams(conn, "INSERT INTO schema_migrations (name) VALUES ($1::text)", 1, NULL,
                       params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        err = ap_pg_fail(conn, res, "schema_migrations");
        goto out;
    }
    err = ap_pg_exec(conn, "COMMIT", "commit");
out:
    PQclear(res);
    if (err && PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE)
        (void)ap_pg_exec(conn, "ROLLBACK", "rollback");
    return err;
}

ap_err_t ap_pg_migrate(const char *conninfo, int *applied)
{
    PGconn *conn = NULL;
    bool locked = false;
    int count = 0;
    ap_err_t err;

    if (!(conn = ap_pg_connect(conninfo))) {
        err = AP_ERR_UNAVAILABLE;
        goto out;
    }
    if ((err = ap_pg_exec(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "lock")))
        goto out;
    locked = true;
    if ((err = ap_pg_exec(conn, create_bookkeeping_sql, "schema_migrations")))
        goto out;
    for (size_t i = 0; i < ap_migrations_count; i++) {
        bool done = false;
        if ((err = is_applied(conn, ap_migrations[i].name, &done)))
            goto out;
        if (done)
            continue;
        if ((err = apply(conn, &ap_migrations[i])))
            goto out;
        AP_INFO("pg", "applied migration %s", ap_migrations[i].name);
        count++;
    }
    if (applied)
        *applied = count;
out:
    /* Closing the session would release the lock too; unlocking says so explicitly. */
    if (locked && PQstatus(conn) == CONNECTION_OK)
        (void)ap_pg_exec(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", "unlock");
    PQfinish(conn);
    return err;
}
