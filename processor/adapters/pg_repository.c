/*
 * pg_repository.c - the PostgreSQL unit of work's repository loads: products with their
 * batches, and, only when a command needs them, some of their lines.
 *
 * A product is loaded with its batches and their allocated quantities, never with its
 * lines (006_flat_history.sql), so a load costs the same whatever the product's history.
 * The lines a command needs come through indexes: those of one order (is the line already
 * allocated?), and a batch's newest ones (which lines does a decrease take back?). It
 * decides nothing: the model says what it needs (AP_ERR_NEED_LINES) and checks what it gets.
 */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "adapters/pg_uow_internal.h"

/* Rebuilds one product from rows [first, end) of a LOAD_PRODUCT result. */
static ap_err_t restore_rows(const PGresult *res, int first, int end, const char *what,
                             ap_product_t **out)
{
    ap_product_t *product = NULL;
    int64_t version;
    ap_err_t err = AP_OK;

    if (PQnfields(res) != 7 || !ap_pg_get_int64(res, first, 1, &version))
        return pg_uow_bad_row(what, first);
    if (!(product = ap_product_restore(PQgetvalue(res, first, 0), version)))
        return AP_ERR_NOMEM;
    for (int row = first; row < end && !err; row++) {
        if (PQgetisnull(res, row, 2))
            continue; /* a product without batches */
        int64_t qty, allocated, eta = 0;
        bool has_eta = !PQgetisnull(res, row, 5);
        if (!ap_pg_get_int64(res, row, 4, &qty) || !ap_pg_get_int64(res, row, 6, &allocated) ||
            (has_eta && (!ap_pg_get_int64(res, row, 5, &eta) || eta < INT32_MIN ||
                         eta > INT32_MAX))) {
            err = pg_uow_bad_row(what, row);
            break;
        }
        err = ap_product_restore_batch(product, PQgetvalue(res, row, 3), qty, has_eta,
                                       (int32_t)eta, allocated, NULL);
        if (err && err != AP_ERR_NOMEM)
            err = pg_uow_bad_row(what, row);
    }
    if (err) {
        ap_product_free(product);
        return err;
    }
    *out = product;
    return AP_OK;
}

static ap_err_t load(pg_uow_t *self, enum stmt st, const char *key, ap_product_t **out)
{
    const char *params[1] = {key};
    PGresult *res = NULL;
    ap_err_t err = pg_uow_execute(self, st, 1, params, PGRES_TUPLES_OK, &res);
    if (err == AP_OK && PQntuples(res) == 0)
        err = AP_ERR_NOT_FOUND;
    if (err == AP_OK)
        err = restore_rows(res, 0, PQntuples(res), pg_stmts[st].name, out);
    PQclear(res);
    return err;
}

/* Many products in one round trip: rows come grouped by sku, in the order asked. */
ap_err_t pg_load_many(ap_uow_t *uow, const char *const *skus, const int64_t *known, size_t n,
                      int64_t *stored, ap_product_t **out)
{
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    char *sku_array = ap_pg_text_array(skus, n), *known_array = ap_pg_int_array(known, n);
    const char *params[2] = {sku_array, known_array};
    const char *what = pg_stmts[ST_LOAD_MANY].name;
    PGresult *res = NULL;
    ap_err_t err = sku_array && known_array
                       ? pg_uow_execute(self, ST_LOAD_MANY, 2, params, PGRES_TUPLES_OK, &res)
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
            err = pg_uow_bad_row(what, first);
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

ap_err_t pg_load(ap_uow_t *uow, const char *sku, ap_product_t **out)
{
    return load(container_of(uow, pg_uow_t, uow), ST_LOAD_SKU, sku, out);
}

ap_err_t pg_load_by_batchref(ap_uow_t *uow, const char *ref, ap_product_t **out)
{
    return load(container_of(uow, pg_uow_t, uow), ST_LOAD_REF, ref, out);
}

/* A model error about a stored line: storage changed under the product (a conflict, which
 * the version check would report at commit anyway) or a row that does not fit. */
static ap_err_t line_error(ap_err_t err, const char *what, int row)
{
    return err == AP_ERR_INVALID_COMMAND ? pg_uow_bad_row(what, row) : err;
}

ap_err_t pg_load_orders(ap_uow_t *uow, ap_product_t *const *products,
                        const char *const *orderids, size_t n)
{
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    const char **skus = malloc((n ? n : 1) * sizeof *skus);
    char *sku_array = NULL, *order_array = NULL;
    const char *what = pg_stmts[ST_LOAD_ORDERS].name;
    PGresult *res = NULL;
    ap_err_t err = AP_ERR_NOMEM;

    if (!skus)
        goto out;
    for (size_t i = 0; i < n; i++)
        skus[i] = products[i]->sku;
    sku_array = ap_pg_text_array(skus, n);
    order_array = ap_pg_text_array(orderids, n);
    const char *params[2] = {sku_array, order_array};
    if (!sku_array || !order_array ||
        (err = pg_uow_execute(self, ST_LOAD_ORDERS, 2, params, PGRES_TUPLES_OK, &res)))
        goto out;
    if (PQnfields(res) != 5) {
        err = pg_uow_bad_row(what, 0);
        goto out;
    }
    for (int row = 0, nrows = PQntuples(res); row < nrows && !err; row++) {
        int64_t ord, id, qty;
        if (!ap_pg_get_int64(res, row, 0, &ord) || ord < 1 || (size_t)ord > n ||
            !ap_pg_get_int64(res, row, 2, &id) || !ap_pg_get_int64(res, row, 4, &qty)) {
            err = pg_uow_bad_row(what, row);
            break;
        }
        err = ap_product_restore_order_line(products[ord - 1], PQgetvalue(res, row, 1), id,
                                            PQgetvalue(res, row, 3), qty);
        err = line_error(err, what, row);
    }
    /* Every line of each order is in now (none at all is an answer too). */
    for (size_t i = 0; i < n && !err; i++)
        err = ap_product_restore_order(products[i], orderids[i]);
out:
    PQclear(res);
    free(skus);
    free(sku_array);
    free(order_array);
    return err;
}

ap_err_t pg_load_older_lines(ap_uow_t *uow, ap_product_t *product, size_t batch, size_t max)
{
    pg_uow_t *self = container_of(uow, pg_uow_t, uow);
    ap_batch_t *b = &product->batches[batch];
    char skip[AP_PG_INT_SIZE], limit[AP_PG_INT_SIZE];
    const char *params[3] = {b->ref, pg_uow_fmt_int(skip, (int64_t)ap_product_stored_newest(product, batch)),
                             pg_uow_fmt_int(limit, (int64_t)max)};
    const char *what = pg_stmts[ST_LOAD_OLDER].name;
    PGresult *res = NULL;
    ap_err_t err = pg_uow_execute(self, ST_LOAD_OLDER, 3, params, PGRES_TUPLES_OK, &res);
    if (err)
        return err;
    int nrows = PQntuples(res);
    if (PQnfields(res) != 3)
        err = pg_uow_bad_row(what, 0);
    else if (nrows == 0)
        err = AP_ERR_CONFLICT; /* the model counts lines storage no longer has */
    for (int row = 0; row < nrows && !err; row++) {
        int64_t id, qty;
        if (!ap_pg_get_int64(res, row, 0, &id) || !ap_pg_get_int64(res, row, 2, &qty)) {
            err = pg_uow_bad_row(what, row);
            break;
        }
        /* Newest first, each in front of the ones before. */
        err = line_error(ap_product_restore_older_line(product, b, id, PQgetvalue(res, row, 1),
                                                       qty),
                         what, row);
    }
    PQclear(res);
    return err;
}
