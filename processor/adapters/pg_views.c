/*
 * pg_views.c - the read side of CQRS on PostgreSQL: plain queries of allocations_view.
 *
 * It never goes through the domain model or the unit of work, and never writes: the view's
 * rows are written by the event handlers through the uow (pg_uow.c). Each query runs on its
 * own (autocommit) connection, which is re-opened when the server dropped it.
 */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "adapters/pg_internal.h"
#include "ap/log.h"
#include "ap/pg.h"

typedef struct pg_views {
    ap_views_t views; /* first: the port (container_of) */
    ap_pg_conn_t db;
} pg_views_t;

static const char allocations_sql[] =
    "SELECT sku, batchref FROM allocations_view WHERE orderid = $1::text ORDER BY id";

static const ap_pg_conn_setup_t views_setup = {"views", NULL, NULL};

static PGresult *run_query(pg_views_t *self, const char *orderid)
{
    const char *params[] = {orderid};
    return PQexecParams(self->db.conn, allocations_sql, 1, NULL, params, NULL, NULL, 0);
}

static ap_err_t pg_allocations(ap_views_t *views, const char *orderid,
                               ap_allocation_row_t **rows, size_t *nrows)
{
    pg_views_t *self = container_of(views, pg_views_t, views);
    ap_allocation_row_t *found = NULL;
    PGresult *res = NULL;
    ap_err_t err;

    if ((err = ap_pg_conn_open(&self->db, &views_setup)))
        goto out;
    res = run_query(self, orderid);
    if (PQresultStatus(res) != PGRES_TUPLES_OK && !ap_pg_conn_connected(&self->db)) {
        /* An idle connection the server dropped: a read is safe to repeat once. */
        PQclear(res);
        res = NULL;
        if ((err = ap_pg_conn_open(&self->db, &views_setup)))
            goto out;
        res = run_query(self, orderid);
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = ap_pg_fail(self->db.conn, res, "allocations");
        goto out;
    }
    int n = PQntuples(res);
    if (n == 0) {
        err = AP_ERR_NOT_FOUND;
        goto out;
    }
    if (!(found = calloc((size_t)n, sizeof *found))) {
        err = AP_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (!ap_str_set(found[i].sku, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0)) ||
            !ap_str_set(found[i].batchref, PQgetvalue(res, i, 1),
                        (size_t)PQgetlength(res, i, 1))) {
            AP_ERROR("pg", "allocations: row %d does not fit the model", i);
            err = AP_ERR_INTERNAL;
            goto out;
        }
    }
    *rows = found;
    *nrows = (size_t)n;
    found = NULL;
out:
    free(found);
    PQclear(res);
    return err;
}

static void pg_views_free(ap_views_t *views)
{
    pg_views_t *self = container_of(views, pg_views_t, views);
    ap_pg_conn_release(&self->db);
    free(self);
}

static const struct ap_views_ops pg_views_ops = {
    .allocations = pg_allocations,
    .free = pg_views_free,
};

ap_err_t ap_pg_views_new(const char *conninfo, ap_views_t **out)
{
    pg_views_t *self = calloc(1, sizeof *self);
    ap_err_t err = AP_ERR_NOMEM;

    if (!self || ap_pg_conn_init(&self->db, conninfo))
        goto out;
    self->views.ops = &pg_views_ops;
    if ((err = ap_pg_conn_open(&self->db, &views_setup)))
        goto out;
    *out = &self->views;
    self = NULL;
out:
    if (self)
        pg_views_free(&self->views);
    return err;
}
