/*
 * fake_uow.c - the unit of work over an in-memory store, for unit tests.
 *
 * The store holds committed copies of products, the read model's rows and consumer offsets.
 * Each begin snapshots the whole store and a rollback restores it, which is exactly what a
 * savepoint does, at a cost that only a test can afford.
 *
 * Like the PostgreSQL adapter, it keeps products whole (every line, with an id in allocation
 * order) but hands them out without their lines, and gives a command the lines it asks for
 * (load_orders, load_older_lines); a commit applies the changes the product recorded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakes.h"

typedef struct view_row {
    char orderid[AP_STR_SIZE];
    ap_allocation_row_t row;
} view_row_t;

typedef struct offset_row {
    char key[3 * AP_STR_SIZE];
    int64_t epoch, next_offset;
} offset_row_t;

/* A row of the fake email outbox (ap_fake_email_outbox_new). */
typedef struct email_row {
    char to[AP_STR_SIZE];
    char subject[2 * AP_STR_SIZE];
    char body[2 * AP_STR_SIZE];
    char event_id[AP_EVENT_ID_SIZE];
} email_row_t;

typedef struct store {
    ap_product_t **products;
    size_t nproducts;
    view_row_t *rows;
    size_t nrows;
    offset_row_t *offsets;
    size_t noffsets;
    email_row_t *emails;
    size_t nemails;
} store_t;

typedef struct fake_uow {
    ap_uow_t uow;
    store_t store;
    store_t *snapshots; /* one per open scope */
    size_t commits, scope_commits;
    int64_t line_ids; /* the last line id given */
    size_t loads; /* products handed to the uow whole (load, load_by_batchref, load_many) */
    size_t queries; /* calls of load, load_by_batchref and load_many: a backend's round trips */
    ap_err_t fail_err;
    unsigned fail_count;
} fake_uow_t;

static fake_uow_t *self_of(ap_uow_t *uow)
{
    return container_of(uow, fake_uow_t, uow);
}

static void store_release(store_t *store)
{
    for (size_t i = 0; i < store->nproducts; i++)
        ap_product_free(store->products[i]);
    free(store->products);
    free(store->rows);
    free(store->offsets);
    free(store->emails);
    memset(store, 0, sizeof *store);
}

static void *dup_bytes(const void *src, size_t size)
{
    void *copy = malloc(size ? size : 1);
    if (copy && size)
        memcpy(copy, src, size);
    return copy;
}

static bool store_copy(store_t *dst, const store_t *src)
{
    memset(dst, 0, sizeof *dst);
    dst->products = calloc(src->nproducts + 1, sizeof *dst->products);
    dst->rows = dup_bytes(src->rows, src->nrows * sizeof *src->rows);
    dst->offsets = dup_bytes(src->offsets, src->noffsets * sizeof *src->offsets);
    dst->emails = dup_bytes(src->emails, src->nemails * sizeof *src->emails);
    if (!dst->products || !dst->rows || !dst->offsets || !dst->emails) {
        store_release(dst);
        return false;
    }
    dst->nrows = src->nrows;
    dst->noffsets = src->noffsets;
    dst->nemails = src->nemails;
    for (size_t i = 0; i < src->nproducts; i++) {
        if (!(dst->products[i] = ap_product_clone(src->products[i]))) {
            store_release(dst);
            return false;
        }
        dst->nproducts++;
    }
    return true;
}

static ap_product_t **stored_slot(fake_uow_t *self, const char *sku)
{
    for (size_t i = 0; i < self->store.nproducts; i++) {
        if (strcmp(self->store.products[i]->sku, sku) == 0)
            return &self->store.products[i];
    }
    return NULL;
}

static ap_err_t fake_begin(ap_uow_t *uow)
{
    fake_uow_t *self = self_of(uow);
    store_t *grown = realloc(self->snapshots, (uow->depth + 1) * sizeof *grown);
    if (!grown)
        return AP_ERR_NOMEM;
    self->snapshots = grown;
    return store_copy(&self->snapshots[uow->depth], &self->store) ? AP_OK : AP_ERR_NOMEM;
}

static ap_err_t write_product(fake_uow_t *self, ap_product_t *product)
{
    ap_product_t **slot = stored_slot(self, product->sku);
    if (product->is_new ? slot != NULL : !slot || (*slot)->version_number != product->stored_version)
        return AP_ERR_CONFLICT;

    ap_product_t *copy = slot ? ap_product_clone(*slot) : ap_product_new(product->sku);
    if (!copy)
        return AP_ERR_NOMEM;
    ap_err_t err = ap_product_apply_changes(copy, product, &self->line_ids);
    if (err) {
        ap_product_free(copy);
        return err;
    }
    if (slot) {
        ap_product_free(*slot);
        *slot = copy;
    } else {
        ap_product_t **grown = realloc(self->store.products,
                                       (self->store.nproducts + 1) * sizeof *grown);
        if (!grown) {
            ap_product_free(copy);
            return AP_ERR_NOMEM;
        }
        self->store.products = grown;
        self->store.products[self->store.nproducts++] = copy;
    }
    ap_product_mark_stored(product);
    return AP_OK;
}

/* A stored product as a load hands it out: its batches, none of its lines. */
static ap_product_t *hand_out(fake_uow_t *self, const ap_product_t *stored)
{
    ap_product_t *copy = ap_product_clone(stored);
    self->loads++;
    if (copy)
        ap_product_forget_lines(copy);
    return copy;
}

static ap_err_t fake_commit(ap_uow_t *uow)
{
    fake_uow_t *self = self_of(uow);

    for (size_t i = 0; i < uow->nseen; i++) {
        ap_product_t *product = uow->seen[i];
        if (!product->is_new && product->nchanges == 0)
            continue;
        if (self->fail_count > 0) {
            self->fail_count--;
            return self->fail_err;
        }
        ap_err_t err = write_product(self, product);
        if (err)
            return err;
    }
    store_release(&self->snapshots[uow->depth - 1]);
    self->scope_commits++;
    if (uow->depth == 1)
        self->commits++;
    return AP_OK;
}

static void fake_rollback(ap_uow_t *uow)
{
    fake_uow_t *self = self_of(uow);
    store_release(&self->store);
    self->store = self->snapshots[uow->depth - 1];
}

static ap_err_t fake_load(ap_uow_t *uow, const char *sku, ap_product_t **out)
{
    ap_product_t **slot = stored_slot(self_of(uow), sku);
    self_of(uow)->queries++;
    if (!slot)
        return AP_ERR_NOT_FOUND;
    return (*out = hand_out(self_of(uow), *slot)) ? AP_OK : AP_ERR_NOMEM;
}

static ap_err_t fake_load_many(ap_uow_t *uow, const char *const *skus, const int64_t *known,
                               size_t n, int64_t *stored, ap_product_t **out)
{
    self_of(uow)->queries++;
    for (size_t i = 0; i < n; i++) {
        ap_product_t **slot = stored_slot(self_of(uow), skus[i]);
        stored[i] = slot ? (*slot)->version_number : -1;
        out[i] = NULL;
        if (slot && stored[i] != known[i]) {
            if (!(out[i] = hand_out(self_of(uow), *slot))) {
                while (i-- > 0)
                    ap_product_free(out[i]);
                return AP_ERR_NOMEM;
            }
        }
    }
    return AP_OK;
}

static ap_err_t fake_load_by_batchref(ap_uow_t *uow, const char *ref, ap_product_t **out)
{
    fake_uow_t *self = self_of(uow);
    self->queries++;
    for (size_t i = 0; i < self->store.nproducts; i++) {
        if (ap_product_find_batch(self->store.products[i], ref))
            return (*out = hand_out(self, self->store.products[i])) ? AP_OK : AP_ERR_NOMEM;
    }
    return AP_ERR_NOT_FOUND;
}

static ap_err_t fake_load_orders(ap_uow_t *uow, ap_product_t *const *products,
                                 const char *const *orderids, size_t n)
{
    fake_uow_t *self = self_of(uow);
    self->queries++;
    for (size_t i = 0; i < n; i++) {
        ap_product_t **slot = stored_slot(self, products[i]->sku);
        if (!slot)
            return AP_ERR_CONFLICT;
        for (size_t b = 0; b < (*slot)->nbatches; b++) {
            const ap_batch_t *batch = &(*slot)->batches[b];
            for (size_t l = 0; l < batch->nlines; l++) {
                if (strcmp(ap_batch_line_orderid(batch, l), orderids[i]) != 0)
                    continue;
                ap_err_t err = ap_product_restore_order_line(products[i], batch->ref,
                                                             batch->lines[l].id, orderids[i],
                                                             batch->lines[l].qty);
                if (err)
                    return err;
            }
        }
        ap_err_t err = ap_product_restore_order(products[i], orderids[i]);
        if (err)
            return err;
    }
    return AP_OK;
}

static ap_err_t fake_load_older_lines(ap_uow_t *uow, ap_product_t *product, size_t batch,
                                      size_t max)
{
    fake_uow_t *self = self_of(uow);
    ap_batch_t *b = &product->batches[batch];
    ap_product_t **slot = stored_slot(self, product->sku);
    const ap_batch_t *whole = slot ? ap_product_find_batch(*slot, b->ref) : NULL;
    size_t skip = ap_product_stored_newest(product, batch);
    self->queries++;
    if (!whole || whole->nlines <= skip)
        return AP_ERR_CONFLICT;
    for (size_t l = whole->nlines - skip, taken = 0; l-- > 0 && taken < max; taken++) {
        ap_err_t err = ap_product_restore_older_line(product, b, whole->lines[l].id,
                                                     ap_batch_line_orderid(whole, l),
                                                     whole->lines[l].qty);
        if (err)
            return err;
    }
    return AP_OK;
}

static ap_err_t fake_view_add(ap_uow_t *uow, const char *orderid, const char *sku,
                              const char *batchref)
{
    store_t *store = &self_of(uow)->store;
    view_row_t *grown = realloc(store->rows, (store->nrows + 1) * sizeof *grown);
    if (!grown)
        return AP_ERR_NOMEM;
    store->rows = grown;
    view_row_t *row = &store->rows[store->nrows++];
    memset(row, 0, sizeof *row);
    ap_str_set(row->orderid, orderid, strlen(orderid));
    ap_str_set(row->row.sku, sku, strlen(sku));
    ap_str_set(row->row.batchref, batchref, strlen(batchref));
    return AP_OK;
}

static ap_err_t fake_view_remove(ap_uow_t *uow, const char *orderid, const char *sku,
                                 const char *batchref)
{
    store_t *store = &self_of(uow)->store;
    for (size_t i = store->nrows; i-- > 0;) {
        view_row_t *row = &store->rows[i];
        if (strcmp(row->orderid, orderid) == 0 && strcmp(row->row.sku, sku) == 0 &&
            strcmp(row->row.batchref, batchref) == 0) {
            memmove(row, row + 1, (store->nrows - i - 1) * sizeof *row);
            store->nrows--;
            break;
        }
    }
    return AP_OK;
}

static offset_row_t *offset_row(store_t *store, const char *group, const char *topic,
                                int32_t partition, bool create)
{
    char key[sizeof ((offset_row_t *)0)->key];
    snprintf(key, sizeof key, "%s\n%s\n%d", group, topic, (int)partition);
    for (size_t i = 0; i < store->noffsets; i++) {
        if (strcmp(store->offsets[i].key, key) == 0)
            return &store->offsets[i];
    }
    if (!create)
        return NULL;
    offset_row_t *grown = realloc(store->offsets, (store->noffsets + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    store->offsets = grown;
    offset_row_t *row = &store->offsets[store->noffsets++];
    memcpy(row->key, key, sizeof key);
    row->epoch = 0;
    row->next_offset = -1;
    return row;
}

static ap_err_t fake_claim(ap_uow_t *uow, const char *group, const char *topic,
                           int32_t partition, int64_t *epoch, int64_t *next_offset)
{
    offset_row_t *row = offset_row(&self_of(uow)->store, group, topic, partition, true);
    if (!row)
        return AP_ERR_NOMEM;
    *epoch = ++row->epoch;
    *next_offset = row->next_offset;
    return AP_OK;
}

static ap_err_t fake_advance(ap_uow_t *uow, const char *group, const char *topic,
                             int32_t partition, int64_t epoch, int64_t expected, int64_t next)
{
    offset_row_t *row = offset_row(&self_of(uow)->store, group, topic, partition, false);
    if (!row || row->epoch != epoch || row->next_offset != expected)
        return AP_ERR_FENCED;
    row->next_offset = next;
    return AP_OK;
}

static void fake_free(ap_uow_t *uow)
{
    fake_uow_t *self = self_of(uow);
    store_release(&self->store);
    free(self->snapshots);
    free(self);
}

static const struct ap_uow_ops fake_uow_ops = {
    .begin = fake_begin,
    .commit = fake_commit,
    .rollback = fake_rollback,
    .repo = {
        .load = fake_load,
        .load_by_batchref = fake_load_by_batchref,
        .load_many = fake_load_many,
        .load_orders = fake_load_orders,
        .load_older_lines = fake_load_older_lines,
    },
    .view = {.add = fake_view_add, .remove = fake_view_remove},
    .offsets = {.claim = fake_claim, .advance = fake_advance},
    .free = fake_free,
};

ap_uow_t *ap_fake_uow_new(void)
{
    fake_uow_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    ap_uow_init(&self->uow, &fake_uow_ops);
    return &self->uow;
}

size_t ap_fake_uow_commits(ap_uow_t *uow)
{
    return self_of(uow)->commits;
}

size_t ap_fake_uow_scope_commits(ap_uow_t *uow)
{
    return self_of(uow)->scope_commits;
}

const ap_product_t *ap_fake_uow_stored(ap_uow_t *uow, const char *sku)
{
    ap_product_t **slot = stored_slot(self_of(uow), sku);
    return slot ? *slot : NULL;
}

void ap_fake_uow_fail_commits(ap_uow_t *uow, ap_err_t err, unsigned count)
{
    self_of(uow)->fail_err = err;
    self_of(uow)->fail_count = count;
}

size_t ap_fake_uow_view_count(ap_uow_t *uow)
{
    return self_of(uow)->store.nrows;
}

const ap_allocation_row_t *ap_fake_uow_view_row(ap_uow_t *uow, size_t i, const char **orderid)
{
    view_row_t *row = &self_of(uow)->store.rows[i];
    if (orderid)
        *orderid = row->orderid;
    return &row->row;
}

/* ---------------------------------------------------------------- views over the store */

typedef struct fake_views {
    ap_views_t views;
    ap_uow_t *uow;
} fake_views_t;

static ap_err_t fake_allocations(ap_views_t *views, const char *orderid,
                                 ap_allocation_row_t **rows, size_t *nrows)
{
    store_t *store = &self_of(container_of(views, fake_views_t, views)->uow)->store;
    ap_allocation_row_t *found = malloc((store->nrows + 1) * sizeof *found);
    size_t n = 0;
    if (!found)
        return AP_ERR_NOMEM;
    for (size_t i = 0; i < store->nrows; i++) {
        if (strcmp(store->rows[i].orderid, orderid) == 0)
            found[n++] = store->rows[i].row;
    }
    if (n == 0) {
        free(found);
        return AP_ERR_NOT_FOUND;
    }
    *rows = found;
    *nrows = n;
    return AP_OK;
}

static void fake_views_free(ap_views_t *views)
{
    free(container_of(views, fake_views_t, views));
}

static const struct ap_views_ops fake_views_ops = {fake_allocations, fake_views_free};

ap_views_t *ap_fake_views_new(ap_uow_t *uow)
{
    fake_views_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->views.ops = &fake_views_ops;
    self->uow = uow;
    return &self->views;
}

size_t ap_fake_uow_loads(ap_uow_t *uow)
{
    return self_of(uow)->loads;
}

size_t ap_fake_uow_queries(ap_uow_t *uow)
{
    return self_of(uow)->queries;
}

ap_err_t ap_fake_uow_store(ap_uow_t *uow, ap_product_t *product)
{
    fake_uow_t *self = self_of(uow);
    ap_product_t **slot = stored_slot(self, product->sku);
    ap_product_mark_stored(product);
    ap_product_clear_events(product);
    /* Kept whole, like every stored product: lines it holds without an id get one. */
    ap_product_mark_complete(product);
    for (size_t b = 0; b < product->nbatches; b++) {
        for (size_t l = 0; l < product->batches[b].nlines; l++) {
            if (product->batches[b].lines[l].id == 0)
                product->batches[b].lines[l].id = ++self->line_ids;
        }
    }
    if (slot) {
        ap_product_free(*slot);
        *slot = product;
        return AP_OK;
    }
    ap_product_t **grown =
        realloc(self->store.products, (self->store.nproducts + 1) * sizeof *grown);
    if (!grown) {
        ap_product_free(product);
        return AP_ERR_NOMEM;
    }
    self->store.products = grown;
    self->store.products[self->store.nproducts++] = product;
    return AP_OK;
}

/* ---------------------------------------------------------------- the email outbox */

typedef struct fake_email_outbox {
    ap_notifier_t notifier;
    ap_uow_t *uow;
} fake_email_outbox_t;

/* Like the PostgreSQL adapter: a row in the uow's current scope, gone if the scope is. */
static ap_err_t fake_email_send(ap_notifier_t *notifier, const char *to, const char *subject,
                                const char *body, const char *event_id)
{
    store_t *store = &self_of(container_of(notifier, fake_email_outbox_t, notifier)->uow)->store;
    email_row_t *grown = realloc(store->emails, (store->nemails + 1) * sizeof *grown);
    if (!grown)
        return AP_ERR_NOMEM;
    store->emails = grown;
    email_row_t *row = &store->emails[store->nemails++];
    snprintf(row->to, sizeof row->to, "%s", to);
    snprintf(row->subject, sizeof row->subject, "%s", subject);
    snprintf(row->body, sizeof row->body, "%s", body);
    snprintf(row->event_id, sizeof row->event_id, "%s", event_id);
    return AP_OK;
}

static void fake_email_free(ap_notifier_t *notifier)
{
    free(container_of(notifier, fake_email_outbox_t, notifier));
}

static const struct ap_notifier_ops fake_email_ops = {fake_email_send, fake_email_free};

ap_notifier_t *ap_fake_email_outbox_new(ap_uow_t *uow)
{
    fake_email_outbox_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->notifier.ops = &fake_email_ops;
    self->uow = uow;
    return &self->notifier;
}

size_t ap_fake_uow_email_count(ap_uow_t *uow)
{
    return self_of(uow)->store.nemails;
}

const char *ap_fake_uow_email_event_id(ap_uow_t *uow, size_t i)
{
    return self_of(uow)->store.emails[i].event_id;
}

const char *ap_fake_uow_email(ap_uow_t *uow, size_t i, const char **to, const char **subject)
{
    const email_row_t *row = &self_of(uow)->store.emails[i];
    if (to)
        *to = row->to;
    if (subject)
        *subject = row->subject;
    return row->body;
}
