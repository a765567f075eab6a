/*
 * uow.c - the unit of work's dispatchers and the bookkeeping every backend shares: scope
 * depth, the products handed out (an identity map, and where the bus finds new events), and
 * a cache of the products earlier scopes of the open transaction committed, so a batch of
 * commands loads each product once.
 *
 * Backends (adapters/pg_uow.c, tests/fakes/fake_uow.c) implement struct ap_uow_ops; they
 * never track products themselves.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "ap/ports.h"

void ap_uow_init(ap_uow_t *uow, const struct ap_uow_ops *ops)
{
    memset(uow, 0, sizeof *uow);
    uow->ops = ops;
}

void ap_uow_forget(ap_uow_t *uow)
{
    for (size_t i = 0; i < uow->nseen; i++)
        ap_product_free(uow->seen[i]);
    uow->nseen = 0;
}

/* Appends to a growable array of products. */
static ap_err_t push(ap_product_t ***items, size_t *n, size_t *cap, ap_product_t *product)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        ap_product_t **grown = realloc(*items, ncap * sizeof *grown);
        if (!grown)
            return AP_ERR_NOMEM;
        *items = grown;
        *cap = ncap;
    }
    (*items)[(*n)++] = product;
    return AP_OK;
}

static ap_err_t remember(ap_uow_t *uow, ap_product_t *product)
{
    return push(&uow->seen, &uow->nseen, &uow->seen_cap, product);
}

static ap_product_t *find_sku(ap_product_t *const *items, size_t n, const char *sku)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(items[i]->sku, sku) == 0)
            return items[i];
    }
    return NULL;
}

static void cache_clear(ap_uow_t *uow)
{
    for (size_t i = 0; i < uow->ncache; i++)
        ap_product_free(uow->cache[i]);
    uow->ncache = 0;
}

/*
 * Hands a cached product over (the caller owns it now). It comes back through cache_put when
 * its scope commits; a rollback empties the cache anyway, so one copy is enough.
 */
static ap_product_t *cache_take(ap_uow_t *uow, size_t i)
{
    ap_product_t *product = uow->cache[i];
    uow->cache[i] = uow->cache[--uow->ncache];
    return product;
}

/* Takes ownership of a committed product, replacing an older copy. */
static void cache_put(ap_uow_t *uow, ap_product_t *product)
{
    ap_product_clear_events(product);
    for (size_t i = 0; i < uow->ncache; i++) {
        if (strcmp(uow->cache[i]->sku, product->sku) == 0) {
            ap_product_free(uow->cache[i]);
            uow->cache[i] = product;
            return;
        }
    }
    if (push(&uow->cache, &uow->ncache, &uow->cache_cap, product))
        ap_product_free(product); /* only a cache: do without */
}

ap_err_t ap_uow_begin(ap_uow_t *uow)
{
    ap_err_t err = uow->ops->begin(uow);
    if (err == AP_OK)
        uow->depth++;
    return err;
}

ap_err_t ap_uow_commit(ap_uow_t *uow)
{
    assert(uow->depth > 0 && "commit without begin");
    ap_err_t err = uow->ops->commit(uow);
    if (err) {
        ap_uow_rollback(uow);
        return err;
    }
    if (--uow->depth == 0)
        cache_clear(uow); /* the next transaction must see what others committed */
    return AP_OK;
}

void ap_uow_rollback(ap_uow_t *uow)
{
    if (uow->depth == 0)
        return;
    uow->ops->rollback(uow);
    uow->depth--;
    /* What the scope changed is gone, and so are the events it recorded; the cache may hold
     * some of it. */
    ap_uow_forget(uow);
    cache_clear(uow);
}

static ap_product_t *seen_by_sku(const ap_uow_t *uow, const char *sku)
{
    return find_sku(uow->seen, uow->nseen, sku);
}

static ap_err_t hand_out(ap_uow_t *uow, ap_product_t *loaded, ap_product_t **out)
{
    /* Loading by batch ref may find a product already handed out: keep the first copy. */
    ap_product_t *known = seen_by_sku(uow, loaded->sku);
    if (known) {
        ap_product_free(loaded);
        *out = known;
        return AP_OK;
    }
    ap_err_t err = remember(uow, loaded);
    if (err) {
        ap_product_free(loaded);
        return err;
    }
    *out = loaded;
    return AP_OK;
}

ap_err_t ap_uow_get(ap_uow_t *uow, const char *sku, ap_product_t **out)
{
    ap_product_t *product = seen_by_sku(uow, sku);
    if (product) {
        *out = product;
        return AP_OK;
    }
    for (size_t i = 0; i < uow->ncache; i++) {
        if (strcmp(uow->cache[i]->sku, sku) == 0)
            return hand_out(uow, cache_take(uow, i), out);
    }
    ap_err_t err = uow->ops->load(uow, sku, &product);
    if (err)
        return err;
    return hand_out(uow, product, out);
}

ap_err_t ap_uow_get_by_batchref(ap_uow_t *uow, const char *ref, ap_product_t **out)
{
    for (size_t i = 0; i < uow->nseen; i++) {
        if (ap_product_find_batch(uow->seen[i], ref)) {
            *out = uow->seen[i];
            return AP_OK;
        }
    }
    ap_product_t *product;
    for (size_t i = 0; i < uow->ncache; i++) {
        if (ap_product_find_batch(uow->cache[i], ref))
            return hand_out(uow, cache_take(uow, i), out);
    }
    ap_err_t err = uow->ops->load_by_batchref(uow, ref, &product);
    if (err)
        return err;
    return hand_out(uow, product, out);
}

void ap_uow_prefetch(ap_uow_t *uow, const char *const *skus, size_t n)
{
    const char **wanted = NULL;
    ap_product_t **loaded = NULL;
    size_t nwanted = 0;

    if (!uow->ops->load_many || uow->depth == 0 || n == 0)
        return;
    if (!(wanted = malloc(n * sizeof *wanted)) || !(loaded = calloc(n, sizeof *loaded)))
        goto out;
    for (size_t i = 0; i < n; i++) {
        bool known = find_sku(uow->cache, uow->ncache, skus[i]) || seen_by_sku(uow, skus[i]);
        for (size_t j = 0; j < nwanted && !known; j++)
            known = strcmp(wanted[j], skus[i]) == 0;
        if (!known)
            wanted[nwanted++] = skus[i];
    }
    if (nwanted > 0 && uow->ops->load_many(uow, wanted, nwanted, loaded) == AP_OK) {
        for (size_t i = 0; i < nwanted; i++) {
            if (loaded[i])
                cache_put(uow, loaded[i]);
        }
    }
out:
    free(wanted);
    free(loaded);
}

ap_err_t ap_uow_add(ap_uow_t *uow, ap_product_t *product)
{
    assert(!seen_by_sku(uow, product->sku) && "product added twice");
    ap_err_t err = remember(uow, product);
    if (err)
        ap_product_free(product);
    return err;
}

ap_err_t ap_uow_collect_new_events(ap_uow_t *uow, ap_event_sink_fn sink, void *ctx)
{
    ap_err_t err = AP_OK;
    for (size_t i = 0; i < uow->nseen && err == AP_OK; i++) {
        const ap_product_t *product = uow->seen[i];
        for (size_t e = 0; e < product->nevents && err == AP_OK; e++)
            err = sink(ctx, &product->events[e]);
    }
    if (err || uow->depth == 0) {
        ap_uow_forget(uow);
        return err;
    }
    /* The handler's scope committed these: later scopes of the transaction may reuse them. */
    for (size_t i = 0; i < uow->nseen; i++)
        cache_put(uow, uow->seen[i]);
    uow->nseen = 0;
    return AP_OK;
}

ap_err_t ap_uow_view_add(ap_uow_t *uow, const char *orderid, const char *sku,
                         const char *batchref)
{
    return uow->ops->view_add(uow, orderid, sku, batchref);
}

ap_err_t ap_uow_view_remove(ap_uow_t *uow, const char *orderid, const char *sku,
                            const char *batchref)
{
    return uow->ops->view_remove(uow, orderid, sku, batchref);
}

ap_err_t ap_uow_claim_partition(ap_uow_t *uow, const char *group, const char *topic,
                                int32_t partition, int64_t *epoch, int64_t *next_offset)
{
    return uow->ops->claim_partition(uow, group, topic, partition, epoch, next_offset);
}

ap_err_t ap_uow_advance_offset(ap_uow_t *uow, const char *group, const char *topic,
                               int32_t partition, int64_t epoch, int64_t expected, int64_t next)
{
    return uow->ops->advance_offset(uow, group, topic, partition, epoch, expected, next);
}

void ap_uow_free(ap_uow_t *uow)
{
    if (!uow)
        return;
    while (uow->depth > 0)
        ap_uow_rollback(uow);
    ap_uow_forget(uow);
    cache_clear(uow);
    free(uow->seen);
    free(uow->cache);
    uow->seen = NULL;
    uow->cache = NULL;
    uow->ops->free(uow);
}
