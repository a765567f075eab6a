/*
 * handlers.c - the use cases: what each command does, and what happens after each event.
 *
 * Every handler does its work inside a unit-of-work scope of its own (the C spelling of
 * the book's `with uow:`), so the bus can undo a failing event handler alone. Handlers see
 * the world only through the ports in `deps`.
 */
#include <stdio.h>
#include <string.h>

#include "ap/bus.h"

typedef ap_err_t (*work_fn)(const ap_deps_t *deps, const ap_msg_t *msg, char *why,
                            size_t whylen);

/* Runs `work` in a new scope: committed when it succeeds, rolled back otherwise. */
static ap_err_t with_uow(work_fn work, const ap_deps_t *deps, const ap_msg_t *msg, char *why,
                         size_t whylen)
{
    ap_err_t err = ap_uow_begin(deps->uow);
    if (err)
        return err;
    err = work(deps, msg, why, whylen);
    if (err == AP_OK)
        return ap_uow_commit(deps->uow);
    ap_uow_rollback(deps->uow);
    return err;
}

/* ---------------------------------------------------------------- commands */

static ap_err_t add_batch_work(const ap_deps_t *deps, const ap_msg_t *cmd, char *why,
                               size_t whylen)
{
    ap_product_t *product;

    /* Batch refs are unique across products, so look for the ref first. */
    ap_err_t err = ap_uow_get_by_batchref(deps->uow, cmd->ref, &product);
    if (err == AP_OK && strcmp(product->sku, cmd->sku) != 0) {
        AP_SAY(why, whylen, "Batch %s already exists for sku %s", cmd->ref, product->sku);
        return AP_ERR_BATCH_EXISTS;
    }
    if (err == AP_ERR_NOT_FOUND) {
        err = ap_uow_get(deps->uow, cmd->sku, &product);
        if (err == AP_ERR_NOT_FOUND) {
            if (!(product = ap_product_new(cmd->sku)))
                return AP_ERR_NOMEM;
            err = ap_uow_add(deps->uow, product);
        }
    }
    if (err)
        return err;
    err = ap_product_add_batch(product, cmd->ref, cmd->qty, cmd->has_eta, cmd->eta);
    if (err == AP_ERR_BATCH_EXISTS)
        AP_SAY(why, whylen, "Batch %s already exists with different fields", cmd->ref);
    return err;
}

static ap_err_t allocate_work(const ap_deps_t *deps, const ap_msg_t *cmd, char *why,
                              size_t whylen)
{
    ap_product_t *product;
    ap_order_line_t line;

    ap_err_t err = ap_uow_get(deps->uow, cmd->sku, &product);
    if (err == AP_ERR_NOT_FOUND) {
        AP_SAY(why, whylen, "Invalid sku %s", cmd->sku);
        return AP_ERR_INVALID_SKU;
    }
    if (err || (err = ap_order_line_init(&line, cmd->orderid, cmd->sku, cmd->qty)) ||
        (err = ap_uow_load_order(deps->uow, product, line.orderid)))
        return err;
    return ap_product_allocate(product, &line, NULL);
}

static ap_err_t change_batch_quantity_work(const ap_deps_t *deps, const ap_msg_t *cmd,
                                           char *why, size_t whylen)
{
    ap_product_t *product;

    ap_err_t err = ap_uow_get_by_batchref(deps->uow, cmd->ref, &product);
    if (err == AP_ERR_NOT_FOUND) {
        AP_SAY(why, whylen, "Unknown batch %s", cmd->ref);
        return AP_ERR_UNKNOWN_BATCH;
    }
    if (err)
        return err;
    /* The lines that leave are the batch's newest: load older ones until they are all in. */
    while ((err = ap_product_change_batch_quantity(product, cmd->ref, cmd->qty)) ==
           AP_ERR_NEED_LINES) {
        if ((err = ap_uow_load_older_lines(deps->uow, product, cmd->ref)))
            return err;
    }
    return err;
}

static ap_err_t add_batch(const ap_deps_t *deps, const ap_msg_t *cmd, char *why, size_t whylen)
{
    return with_uow(add_batch_work, deps, cmd, why, whylen);
}

static ap_err_t allocate(const ap_deps_t *deps, const ap_msg_t *cmd, char *why, size_t whylen)
{
    return with_uow(allocate_work, deps, cmd, why, whylen);
}

static ap_err_t change_batch_quantity(const ap_deps_t *deps, const ap_msg_t *cmd, char *why,
                                      size_t whylen)
{
    return with_uow(change_batch_quantity_work, deps, cmd, why, whylen);
}

/* ---------------------------------------------------------------- events */

static ap_err_t publish_work(const ap_deps_t *deps, const ap_msg_t *event, char *why,
                             size_t whylen)
{
    (void)why, (void)whylen;
    return ap_publisher_publish(deps->publisher, event);
}

static ap_err_t view_add_work(const ap_deps_t *deps, const ap_msg_t *event, char *why,
                              size_t whylen)
{
    (void)why, (void)whylen;
    return ap_uow_view_add(deps->uow, event->orderid, event->sku, event->batchref);
}

static ap_err_t view_remove_work(const ap_deps_t *deps, const ap_msg_t *event, char *why,
                                 size_t whylen)
{
    (void)why, (void)whylen;
    return ap_uow_view_remove(deps->uow, event->orderid, event->sku, event->batchref);
}

static ap_err_t publish_event(const ap_deps_t *deps, const ap_msg_t *event, char *why,
                              size_t whylen)
{
    return with_uow(publish_work, deps, event, why, whylen);
}

static ap_err_t add_allocation_to_read_model(const ap_deps_t *deps, const ap_msg_t *event,
                                             char *why, size_t whylen)
{
    return with_uow(view_add_work, deps, event, why, whylen);
}

static ap_err_t remove_allocation_from_read_model(const ap_deps_t *deps, const ap_msg_t *event,
                                                  char *why, size_t whylen)
{
    return with_uow(view_remove_work, deps, event, why, whylen);
}

/* A line that left its batch is allocated again, like a new Allocate of the same line. */
static ap_err_t reallocate(const ap_deps_t *deps, const ap_msg_t *event, char *why,
                           size_t whylen)
{
    ap_msg_t cmd;
    ap_err_t err = ap_msg_allocate(&cmd, event->orderid, event->sku, event->qty);
    if (err)
        return err;
    return allocate(deps, &cmd, why, whylen);
}

/*
 * The notifier writes the email in this scope (a row of the email outbox in production), so
 * it commits with the command or not at all: a command rolled back or retried sends nothing
 * extra. The email sender delivers it after commit.
 */
static ap_err_t notify_work(const ap_deps_t *deps, const ap_msg_t *event, char *why,
                            size_t whylen)
{
    char subject[AP_STR_SIZE + 32], body[AP_STR_SIZE + 32];

    (void)why, (void)whylen;
    snprintf(subject, sizeof subject, "Out of stock: %s", event->sku);
    snprintf(body, sizeof body, "Out of stock for %s", event->sku);
    return ap_notifier_send(deps->notifier, deps->notify_to, subject, body,
                            event->meta.event_id);
}

static ap_err_t send_out_of_stock_notification(const ap_deps_t *deps, const ap_msg_t *event,
                                               char *why, size_t whylen)
{
    return with_uow(notify_work, deps, event, why, whylen);
}

const ap_handler_table_t ap_default_handlers = {
    .command = {
        [AP_CMD_CREATE_BATCH] = add_batch,
        [AP_CMD_ALLOCATE] = allocate,
        [AP_CMD_CHANGE_BATCH_QUANTITY] = change_batch_quantity,
    },
    .event = {
        [AP_EVT_BATCH_CREATED] = {publish_event},
        [AP_EVT_BATCH_QUANTITY_CHANGED] = {publish_event},
        [AP_EVT_ALLOCATED] = {publish_event, add_allocation_to_read_model},
        [AP_EVT_DEALLOCATED] = {publish_event, remove_allocation_from_read_model, reallocate},
        [AP_EVT_OUT_OF_STOCK] = {publish_event, send_out_of_stock_notification},
    },
};
