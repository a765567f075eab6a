/*
 * model.c - the allocation rules: which batch serves an order line, and what a quantity
 * change takes back.
 *
 * Everything a Product does is recorded twice: as domain events for the outside world and
 * as changes for storage. The first goes to the message bus, the second to the repository;
 * neither leaves this file by any other way. Pure C: no I/O, no logging.
 */
#include "ap/array.h"
#include "ap/model.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- order lines, batches */

ap_err_t ap_order_line_init(ap_order_line_t *line, const char *orderid, const char *sku,
                            int64_t qty)
{
    memset(line, 0, sizeof *line);
    if (!ap_str_set(line->orderid, orderid, strlen(orderid)) ||
        !ap_str_set(line->sku, sku, strlen(sku)))
        return AP_ERR_INVALID_COMMAND;
    line->qty = qty;
    return AP_OK;
}

bool ap_order_line_equal(const ap_order_line_t *a, const ap_order_line_t *b)
{
    return a->qty == b->qty && strcmp(a->orderid, b->orderid) == 0 && strcmp(a->sku, b->sku) == 0;
}

const char *ap_batch_line_orderid(const ap_batch_t *batch, size_t i)
{
    assert(i < batch->nlines);
    return batch->text + batch->lines[i].orderid_at;
}

int64_t ap_batch_allocated_qty(const ap_batch_t *batch)
{
    return batch->allocated_qty;
}

int64_t ap_batch_available_qty(const ap_batch_t *batch)
{
    return batch->purchased_qty - batch->allocated_qty;
}

bool ap_batch_can_allocate(const ap_batch_t *batch, const ap_order_line_t *line)
{
    return strcmp(batch->sku, line->sku) == 0 && ap_batch_available_qty(batch) >= line->qty;
}

bool ap_batch_has_line(const ap_batch_t *batch, const ap_order_line_t *line)
{
    /* Every stored line has the batch's sku, so one comparison settles it for all. */
    if (strcmp(batch->sku, line->sku) != 0)
        return false;
    size_t len = strnlen(line->orderid, sizeof line->orderid);
    for (size_t i = 0; i < batch->nlines; i++) {
        const ap_batch_line_t *stored = &batch->lines[i];
        if (stored->qty == line->qty && stored->orderid_len == len &&
            memcmp(batch->text + stored->orderid_at, line->orderid, len) == 0)
            return true;
    }
    return false;
}

int64_t ap_batch_unknown_qty(const ap_batch_t *batch)
{
    return batch->allocated_qty - batch->known_qty;
}

/* Stores `orderid` (`len` bytes, no NUL) at the arena's end; its offset, or -1. */
static int64_t batch_store_text(ap_batch_t *batch, const char *orderid, size_t len)
{
    /* Offsets are 32-bit to keep lines small: past four GiB of orderids a batch is full. */
    if (batch->text_len + len + 1 > UINT32_MAX ||
        !AP_ARRAY_RESERVE(batch->text, batch->text_cap, batch->text_len + len + 1))
        return -1;
    int64_t at = (int64_t)batch->text_len;
    memcpy(batch->text + batch->text_len, orderid, len);
    batch->text[batch->text_len + len] = '\0';
    batch->text_len += len + 1;
    return at;
}

/*
 * Appends a line of the batch's sku. `orderid` (`len` bytes, no NUL) must not point into the
 * batch's own arena, which may move.
 */
static ap_err_t batch_append_line(ap_batch_t *batch, const char *orderid, size_t len,
                                  int64_t qty)
{
    assert(len <= AP_STR_MAX);
    if (!AP_ARRAY_RESERVE(batch->lines, batch->lines_cap, batch->nlines + 1))
        return AP_ERR_NOMEM;
    int64_t at = batch_store_text(batch, orderid, len);
    if (at < 0)
        return AP_ERR_NOMEM;
    ap_batch_line_t *stored = &batch->lines[batch->nlines++];
    stored->id = 0;
    stored->orderid_at = (uint32_t)at;
    stored->orderid_len = (uint32_t)len;
    stored->qty = qty;
    batch->allocated_qty += qty;
    batch->known_qty += qty;
    return AP_OK;
}

/* Takes the most recently allocated line off the batch, as a full order line. */
static ap_order_line_t batch_pop_line(ap_batch_t *batch)
{
    assert(batch->nlines > 0);
    const ap_batch_line_t *stored = &batch->lines[--batch->nlines];
    ap_order_line_t line = {.qty = stored->qty};
    /* Copy out before the arena gives the bytes back. */
    memcpy(line.orderid, batch->text + stored->orderid_at, stored->orderid_len);
    memcpy(line.sku, batch->sku, sizeof line.sku);
    if (stored->orderid_at + stored->orderid_len + 1 == batch->text_len)
        batch->text_len = stored->orderid_at;
    batch->allocated_qty -= stored->qty;
    batch->known_qty -= stored->qty;
    return line;
}

/* ---------------------------------------------------------------- product lifecycle */

static ap_product_t *product_alloc(const char *sku, int64_t version, bool is_new)
{
    ap_product_t *product = calloc(1, sizeof *product);
    if (!product)
        return NULL;
    if (!ap_str_set(product->sku, sku, strlen(sku))) {
        free(product);
        return NULL;
    }
    product->version_number = version;
    product->stored_version = version;
    product->is_new = is_new;
    return product;
}

ap_product_t *ap_product_new(const char *sku)
{
    ap_product_t *product = product_alloc(sku, 0, true);
    if (product)
        product->complete = true; /* storage has none of its lines: all are in memory */
    return product;
}

ap_product_t *ap_product_restore(const char *sku, int64_t version)
{
    return product_alloc(sku, version, false);
}

static ap_batch_t *product_append_batch(ap_product_t *product, const char *ref, int64_t qty,
                                        bool has_eta, int32_t eta)
{
    if (!AP_ARRAY_RESERVE(product->batches, product->batches_cap, product->nbatches + 1))
        return NULL;
    ap_batch_t *batch = &product->batches[product->nbatches];
    memset(batch, 0, sizeof *batch);
    if (!ap_str_set(batch->ref, ref, strlen(ref)))
        return NULL;
    memcpy(batch->sku, product->sku, sizeof batch->sku);
    batch->purchased_qty = qty;
    batch->has_eta = has_eta;
    batch->eta = has_eta ? eta : 0;
    product->nbatches++;
    return batch;
}

ap_err_t ap_product_restore_batch(ap_product_t *product, const char *ref, int64_t purchased_qty,
                                  bool has_eta, int32_t eta, int64_t allocated_qty,
                                  ap_batch_t **out)
{
    ap_batch_t *batch = product_append_batch(product, ref, purchased_qty, has_eta, eta);
    if (!batch)
        return AP_ERR_NOMEM;
    batch->allocated_qty = allocated_qty;
    if (out)
        *out = batch;
    return AP_OK;
}

ap_err_t ap_product_restore_line(ap_batch_t *batch, const char *orderid, int64_t qty)
{
    /* The copy both checks the length and keeps `orderid` safe if it points into the arena. */
    char copy[AP_STR_SIZE];
    size_t len = strnlen(orderid, AP_STR_SIZE);
    if (!ap_str_set(copy, orderid, len))
        return AP_ERR_INVALID_COMMAND;
    return batch_append_line(batch, copy, len, qty);
}

void ap_product_mark_complete(ap_product_t *product)
{
    product->complete = true;
}

/* The found line with this id in batch index `b`, or -1. */
static long find_found(const ap_product_t *product, size_t b, int64_t id)
{
    for (size_t i = 0; i < product->nfound; i++) {
        if (product->found[i].batch == b && product->found[i].id == id)
            return (long)i;
    }
    return -1;
}

static bool batch_has_id(const ap_batch_t *batch, int64_t id)
{
    for (size_t i = 0; i < batch->nlines; i++) {
        if (batch->lines[i].id == id)
            return true;
    }
    return false;
}

ap_err_t ap_product_restore_older_line(ap_product_t *product, ap_batch_t *batch, int64_t id,
                                       const char *orderid, int64_t qty)
{
    size_t len = strnlen(orderid, AP_STR_SIZE);
    if (len > AP_STR_MAX)
        return AP_ERR_INVALID_COMMAND;
    if (qty <= 0 || qty > ap_batch_unknown_qty(batch) || batch_has_id(batch, id))
        return AP_ERR_CONFLICT;
    if (!AP_ARRAY_RESERVE(batch->lines, batch->lines_cap, batch->nlines + 1))
        return AP_ERR_NOMEM;
    char copy[AP_STR_SIZE];
    memcpy(copy, orderid, len); /* `orderid` may point into the arena, which may move */
    int64_t at = batch_store_text(batch, copy, len);
    if (at < 0)
        return AP_ERR_NOMEM;
    memmove(batch->lines + 1, batch->lines, batch->nlines * sizeof *batch->lines);
    batch->lines[0] = (ap_batch_line_t){.id = id, .orderid_at = (uint32_t)at,
                                        .orderid_len = (uint32_t)len, .qty = qty};
    batch->nlines++;
    batch->known_qty += qty;
    /* Found by an order's lookup before: it is one of the batch's lines in memory now. */
    long dup = find_found(product, (size_t)(batch - product->batches), id);
    if (dup >= 0) {
        product->found[dup] = product->found[product->nfound - 1];
        product->nfound--;
    }
    return AP_OK;
}

ap_err_t ap_product_restore_order_line(ap_product_t *product, const char *ref, int64_t id,
                                       const char *orderid, int64_t qty)
{
    const ap_batch_t *batch = ap_product_find_batch(product, ref);
    if (!batch)
        return AP_ERR_CONFLICT;
    size_t b = (size_t)(batch - product->batches);
    if (batch_has_id(batch, id) || find_found(product, b, id) >= 0)
        return AP_OK;
    if (!AP_ARRAY_RESERVE(product->found, product->found_cap, product->nfound + 1))
        return AP_ERR_NOMEM;
    ap_found_line_t *line = &product->found[product->nfound];
    memset(line, 0, sizeof *line);
    if (!ap_str_set(line->orderid, orderid, strnlen(orderid, AP_STR_SIZE)))
        return AP_ERR_INVALID_COMMAND;
    line->batch = b;
    line->id = id;
    line->qty = qty;
    product->nfound++;
    return AP_OK;
}

bool ap_product_knows_order(const ap_product_t *product, const char *orderid)
{
    if (product->complete)
        return true;
    for (size_t i = 0; i < product->norders; i++) {
        if (strcmp(product->orders[i], orderid) == 0)
            return true;
    }
    return false;
}

ap_err_t ap_product_restore_order(ap_product_t *product, const char *orderid)
{
    if (ap_product_knows_order(product, orderid))
        return AP_OK;
    if (!AP_ARRAY_RESERVE(product->orders, product->orders_cap, product->norders + 1))
        return AP_ERR_NOMEM;
    if (!ap_str_set(product->orders[product->norders], orderid, strnlen(orderid, AP_STR_SIZE)))
        return AP_ERR_INVALID_COMMAND;
    product->norders++;
    return AP_OK;
}

size_t ap_product_stored_newest(const ap_product_t *product, size_t b)
{
    size_t n = product->batches[b].nlines;
    for (size_t i = 0; i < product->nchanges; i++) {
        const ap_change_t *change = &product->changes[i];
        if (change->batch == b && change->kind == AP_CHANGE_ADD_LINE)
            n--;
        else if (change->batch == b && change->kind == AP_CHANGE_REMOVE_LINE)
            n++;
    }
    return n;
}

bool ap_product_removal_pending(const ap_product_t *product, const char *orderid)
{
    for (size_t i = 0; i < product->nchanges; i++) {
        const ap_change_t *change = &product->changes[i];
        if (change->kind == AP_CHANGE_REMOVE_LINE && strcmp(change->line.orderid, orderid) == 0)
            return true;
    }
    return false;
}

/* Frees an array (any T *) and empties it. A macro: a T ** is not a void **. */
#define DROP_ARRAY(items, n, cap) (free(items), (items) = NULL, (n) = (cap) = 0)

void ap_product_forget_lines(ap_product_t *product)
{
    for (size_t i = 0; i < product->nbatches; i++) {
        ap_batch_t *batch = &product->batches[i];
        DROP_ARRAY(batch->lines, batch->nlines, batch->lines_cap);
        DROP_ARRAY(batch->text, batch->text_len, batch->text_cap);
        batch->known_qty = 0;
    }
    DROP_ARRAY(product->orders, product->norders, product->orders_cap);
    DROP_ARRAY(product->found, product->nfound, product->found_cap);
    DROP_ARRAY(product->gone, product->ngone, product->gone_cap);
    product->complete = false;
}

void ap_product_free(ap_product_t *product)
{
    if (!product)
        return;
    for (size_t i = 0; i < product->nbatches; i++) {
        free(product->batches[i].lines);
        free(product->batches[i].text);
    }
    free(product->batches);
    free(product->events);
    free(product->changes);
    free(product->orders);
    free(product->found);
    free(product->gone);
    free(product);
}

/* Copies n elements of `size` bytes into a new exact-size array stored at `dstp` (a T **,
 * written as bytes: it is not a void **); true when n is 0. */
static bool dup_array(void *dstp, size_t *cap, const void *src, size_t n, size_t size)
{
    void *copy = NULL;
    *cap = 0;
    if (n > 0 && (copy = malloc(n * size)))
        memcpy(copy, src, n * size);
    memcpy(dstp, &copy, sizeof copy);
    if (n > 0 && !copy)
        return false;
    *cap = n;
    return true;
}

ap_product_t *ap_product_clone(const ap_product_t *product)
{
    ap_product_t *copy = malloc(sizeof *copy);
    if (!copy)
        return NULL;
    *copy = *product;
    copy->batches = NULL;
    copy->nbatches = 0;
    copy->events = NULL;
    copy->changes = NULL;
    copy->orders = NULL;
    copy->found = NULL;
    copy->gone = NULL;

    bool ok = dup_array(&copy->events, &copy->events_cap, product->events,
                        product->nevents, sizeof *product->events) &&
              dup_array(&copy->orders, &copy->orders_cap, product->orders,
                        product->norders, sizeof *product->orders) &&
              dup_array(&copy->found, &copy->found_cap, product->found,
                        product->nfound, sizeof *product->found) &&
              dup_array(&copy->gone, &copy->gone_cap, product->gone, product->ngone,
                        sizeof *product->gone) &&
              dup_array(&copy->changes, &copy->changes_cap, product->changes,
                        product->nchanges, sizeof *product->changes) &&
              dup_array(&copy->batches, &copy->batches_cap, product->batches,
                        product->nbatches, sizeof *product->batches);
    /* The batches were copied shallowly; give each its own lines and arena. A batch counts
     * in copy->nbatches (for ap_product_free) once both are its own or NULL. */
    for (size_t i = 0; ok && i < product->nbatches; i++) {
        const ap_batch_t *from = &product->batches[i];
        ap_batch_t *batch = &copy->batches[i];
        ok = dup_array(&batch->lines, &batch->lines_cap, from->lines, from->nlines,
                       sizeof *batch->lines);
        if (ok) {
            ok = dup_array(&batch->text, &batch->text_cap, from->text, from->text_len,
                           sizeof *batch->text);
        } else {
            batch->text = NULL;
        }
        copy->nbatches = i + 1;
    }
    if (!ok) {
        ap_product_free(copy);
        return NULL;
    }
    return copy;
}

size_t ap_product_footprint(const ap_product_t *product)
{
    size_t bytes = sizeof *product + product->batches_cap * sizeof *product->batches +
                   product->events_cap * sizeof *product->events +
                   product->changes_cap * sizeof *product->changes +
                   product->orders_cap * sizeof *product->orders +
                   product->found_cap * sizeof *product->found +
                   product->gone_cap * sizeof *product->gone;
    for (size_t i = 0; i < product->nbatches; i++) {
        const ap_batch_t *batch = &product->batches[i];
        bytes += batch->lines_cap * sizeof *batch->lines + batch->text_cap;
    }
    return bytes;
}

ap_batch_t *ap_product_find_batch(const ap_product_t *product, const char *ref)
{
    for (size_t i = 0; i < product->nbatches; i++) {
        if (strcmp(product->batches[i].ref, ref) == 0)
            return &product->batches[i];
    }
    return NULL;
}

void ap_product_clear_events(ap_product_t *product)
{
    product->nevents = 0;
}

void ap_product_mark_stored(ap_product_t *product)
{
    product->nchanges = 0;
    product->stored_version = product->version_number;
    product->is_new = false;
}

/* ---------------------------------------------------------------- recording */

static ap_err_t record_event(ap_product_t *product, const ap_msg_t *event)
{
    if (!AP_ARRAY_RESERVE(product->events, product->events_cap, product->nevents + 1))
        return AP_ERR_NOMEM;
    product->events[product->nevents++] = *event;
    return AP_OK;
}

static ap_err_t record_change(ap_product_t *product, ap_change_kind_t kind,
                              const ap_batch_t *batch, const ap_order_line_t *line)
{
    if (!AP_ARRAY_RESERVE(product->changes, product->changes_cap, product->nchanges + 1))
        return AP_ERR_NOMEM;
    ap_change_t *change = &product->changes[product->nchanges++];
    memset(change, 0, sizeof *change);
    change->kind = kind;
    change->batch = (size_t)(batch - product->batches);
    if (line)
        change->line = *line;
    return AP_OK;
}

static ap_msg_t line_event(ap_msg_type_t type, const ap_order_line_t *line,
                           const ap_batch_t *batch)
{
    ap_msg_t event = {.type = type, .qty = line->qty};
    memcpy(event.orderid, line->orderid, sizeof event.orderid);
    memcpy(event.sku, line->sku, sizeof event.sku);
    memcpy(event.batchref, batch->ref, sizeof event.batchref);
    return event;
}

/*
 * Reserves room for everything an operation may record, so that once it starts changing
 * the product it cannot fail half-way.
 */
static ap_err_t reserve_records(ap_product_t *product, size_t events, size_t changes)
{
    if (!AP_ARRAY_RESERVE(product->events, product->events_cap, product->nevents + events) ||
        !AP_ARRAY_RESERVE(product->changes, product->changes_cap, product->nchanges + changes))
        return AP_ERR_NOMEM;
    return AP_OK;
}

/* ---------------------------------------------------------------- behaviour */

ap_err_t ap_product_add_batch(ap_product_t *product, const char *ref, int64_t qty, bool has_eta,
                              int32_t eta)
{
    const ap_batch_t *existing = ap_product_find_batch(product, ref);
    if (existing) {
        bool same = existing->purchased_qty == qty && existing->has_eta == has_eta &&
                    (!has_eta || existing->eta == eta);
        return same ? AP_OK : AP_ERR_BATCH_EXISTS;
    }

    ap_err_t err = reserve_records(product, 1, 1);
    if (err)
        return err;
    ap_batch_t *batch = product_append_batch(product, ref, qty, has_eta, eta);
    if (!batch)
        return AP_ERR_NOMEM;

    ap_msg_t event = {.type = AP_EVT_BATCH_CREATED, .qty = qty, .has_eta = batch->has_eta,
                      .eta = batch->eta};
    memcpy(event.ref, batch->ref, sizeof event.ref);
    memcpy(event.sku, batch->sku, sizeof event.sku);
    record_change(product, AP_CHANGE_ADD_BATCH, batch, NULL);
    record_event(product, &event);
    product->version_number++;
    return AP_OK;
}

/* Orders batches by preference: in the warehouse first, then earliest eta. */
static bool preferred(const ap_batch_t *a, const ap_batch_t *b)
{
    if (a->has_eta != b->has_eta)
        return !a->has_eta;
    return a->has_eta && a->eta < b->eta;
}

/* Where (line) is among the lines taken back, or -1. */
static long find_gone(const ap_product_t *product, const ap_order_line_t *line)
{
    for (size_t i = 0; i < product->ngone; i++) {
        if (product->gone[i].qty == line->qty && strcmp(product->gone[i].orderid, line->orderid) == 0)
            return (long)i;
    }
    return -1;
}

/* Remembers a line taken back; only a shortcut, so out of memory just goes without. */
static void remember_gone(ap_product_t *product, const ap_order_line_t *line)
{
    if (product->complete || find_gone(product, line) >= 0 ||
        !AP_ARRAY_RESERVE(product->gone, product->gone_cap, product->ngone + 1))
        return;
    ap_found_line_t *gone = &product->gone[product->ngone++];
    memset(gone, 0, sizeof *gone);
    memcpy(gone->orderid, line->orderid, sizeof gone->orderid);
    gone->qty = line->qty;
}

ap_err_t ap_product_allocate(ap_product_t *product, const ap_order_line_t *line,
                             const char **batchref_out)
{
    if (batchref_out)
        *batchref_out = NULL;
    if (strcmp(line->sku, product->sku) != 0)
        return AP_ERR_INVALID_SKU;
    long gone = find_gone(product, line);
    if (gone < 0 && !ap_product_knows_order(product, line->orderid))
        return AP_ERR_NEED_LINES;
    for (size_t i = 0; i < product->nfound; i++) {
        const ap_found_line_t *found = &product->found[i];
        if (found->qty == line->qty && strcmp(found->orderid, line->orderid) == 0)
            return AP_OK; /* already allocated, in a line older than those in memory */
    }

    ap_batch_t *best = NULL;
    for (size_t i = 0; i < product->nbatches; i++) {
        ap_batch_t *batch = &product->batches[i];
        if (ap_batch_has_line(batch, line))
            return AP_OK; /* already allocated: idempotent */
        /* Strictly better only, so ties stay with the batch created first. */
        if (ap_batch_can_allocate(batch, line) && (!best || preferred(batch, best)))
            best = batch;
    }

    ap_err_t err = reserve_records(product, 1, 1);
    if (err)
        return err;
    if (!best) {
        ap_msg_t event = {.type = AP_EVT_OUT_OF_STOCK};
        memcpy(event.sku, product->sku, sizeof event.sku);
        return record_event(product, &event);
    }
    if ((err = batch_append_line(best, line->orderid, strnlen(line->orderid, AP_STR_SIZE),
                                 line->qty)))
        return err;
    if (gone >= 0) /* it is a line of the batch now */
        product->gone[gone] = product->gone[--product->ngone];
    ap_msg_t event = line_event(AP_EVT_ALLOCATED, line, best);
    record_change(product, AP_CHANGE_ADD_LINE, best, line);
    record_event(product, &event);
    product->version_number++;
    if (batchref_out)
        *batchref_out = best->ref;
    return AP_OK;
}

ap_err_t ap_product_change_batch_quantity(ap_product_t *product, const char *ref, int64_t qty)
{
    ap_batch_t *batch = ap_product_find_batch(product, ref);
    if (!batch)
        return AP_ERR_UNKNOWN_BATCH;

    /* Room for the quantity change and the lines that will leave: counted, not assumed to be
     * all of them, as reserved room stays with the product (a cached one too). */
    size_t leaving = 0;
    int64_t available = qty - batch->allocated_qty;
    for (; available < 0 && leaving < batch->nlines; leaving++)
        available += batch->lines[batch->nlines - 1 - leaving].qty;
    if (available < 0 && ap_batch_unknown_qty(batch) > 0)
        return AP_ERR_NEED_LINES; /* lines that must leave are still in storage */
    ap_err_t err = reserve_records(product, 1 + leaving, 1 + leaving);
    if (err)
        return err;

    batch->purchased_qty = qty;
    ap_msg_t event = {.type = AP_EVT_BATCH_QUANTITY_CHANGED, .qty = qty};
    memcpy(event.ref, batch->ref, sizeof event.ref);
    memcpy(event.sku, batch->sku, sizeof event.sku);
    record_change(product, AP_CHANGE_SET_QTY, batch, NULL);
    record_event(product, &event);

    /* Last in, first out: the most recent allocations leave first. */
    while (ap_batch_available_qty(batch) < 0 && batch->nlines > 0) {
        ap_order_line_t line = batch_pop_line(batch);
        remember_gone(product, &line);
        ap_msg_t left = line_event(AP_EVT_DEALLOCATED, &line, batch);
        record_change(product, AP_CHANGE_REMOVE_LINE, batch, &line);
        record_event(product, &left);
    }
    product->version_number++;
    return AP_OK;
}

void ap_product_trim(ap_product_t *product)
{
    if (product->nevents == 0) {
        free(product->events);
        product->events = NULL;
        product->events_cap = 0;
    }
    if (product->nchanges == 0) {
        free(product->changes);
        product->changes = NULL;
        product->changes_cap = 0;
    }
}

/* ---------------------------------------------------------------- whole-product storage */

ap_err_t ap_product_apply_changes(ap_product_t *whole, const ap_product_t *changed,
                                  int64_t *next_id)
{
    assert(whole->complete && strcmp(whole->sku, changed->sku) == 0);
    if (whole->version_number != changed->stored_version)
        return AP_ERR_CONFLICT;
    for (size_t i = 0; i < changed->nchanges; i++) {
        const ap_change_t *change = &changed->changes[i];
        const ap_batch_t *from = &changed->batches[change->batch];
        ap_batch_t *batch = ap_product_find_batch(whole, from->ref);
        ap_err_t err = AP_OK;
        switch (change->kind) {
        case AP_CHANGE_ADD_BATCH:
            if (batch)
                return AP_ERR_CONFLICT;
            err = ap_product_restore_batch(whole, from->ref, from->purchased_qty, from->has_eta,
                                           from->eta, 0, NULL);
            break;
        case AP_CHANGE_SET_QTY:
            if (!batch)
                return AP_ERR_CONFLICT;
            batch->purchased_qty = from->purchased_qty;
            break;
        case AP_CHANGE_ADD_LINE:
            if (!batch)
                return AP_ERR_CONFLICT;
            if (!(err = ap_product_restore_line(batch, change->line.orderid, change->line.qty)))
                batch->lines[batch->nlines - 1].id = ++*next_id;
            break;
        case AP_CHANGE_REMOVE_LINE: {
            if (!batch || batch->nlines == 0)
                return AP_ERR_CONFLICT;
            ap_order_line_t newest = batch_pop_line(batch);
            if (!ap_order_line_equal(&newest, &change->line))
                return AP_ERR_CONFLICT;
            break;
        }
        }
        if (err)
            return err;
    }
    whole->version_number = changed->version_number;
    whole->stored_version = changed->version_number;
    whole->is_new = false;
    return AP_OK;
}
