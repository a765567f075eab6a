/*
 * uow.c - the unit of work's dispatchers and the bookkeeping every backend shares: scope
 * depth, the products handed out (an identity map, and where the bus finds new events), a
 * cache of the products earlier scopes of the open transaction committed, so a batch of
 * commands loads each product once, and, optionally, the products earlier transactions
 * committed, so a product storage confirms is not loaded again at all.
 *
 * Backends (adapters/pg_uow.c, tests/fakes/fake_uow.c) implement struct ap_uow_ops; they
 * never track products themselves.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "ap/array.h"
#include "ap/ports.h"
#include "ap/strset.h"

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

static ap_err_t remember(ap_uow_t *uow, ap_product_t *product)
{
    if (!AP_ARRAY_RESERVE(uow->seen, uow->seen_cap, uow->nseen + 1))
        return AP_ERR_NOMEM;
    uow->seen[uow->nseen++] = product;
    return AP_OK;
}

static ap_product_t *find_sku(ap_product_t *const *items, size_t n, const char *sku)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(items[i]->sku, sku) == 0)
            return items[i];
    }
    return NULL;
}

/* The transaction's cache, made at first use; NULL when out of memory (do without). */
static ap_product_cache_t *tx_cache(ap_uow_t *uow)
{
    if (!uow->cache)
        uow->cache = ap_product_cache_new(0, true);
    return uow->cache;
}

static void cache_clear(ap_uow_t *uow)
{
    if (uow->cache)
        ap_product_cache_clear(uow->cache);
}

/* A product the transaction's cache holds, handed over (the caller owns it now). It comes
 * back when its scope commits (ap_uow_collect_new_events); a rollback empties the cache. */
static ap_product_t *cache_take(ap_uow_t *uow, const char *sku)
{
    return uow->cache ? ap_product_cache_take(uow->cache, sku) : NULL;
}

ap_err_t ap_uow_keep_committed(ap_uow_t *uow, size_t max_bytes)
{
    ap_product_cache_free(uow->committed);
    uow->committed = NULL;
    if (max_bytes == 0 || !uow->ops->repo.load_many)
        return AP_OK;
    uow->committed = ap_product_cache_new(max_bytes, false);
    return uow->committed ? AP_OK : AP_ERR_NOMEM;
}

/* The transaction committed: what its scopes committed is what storage holds now. */
static void keep_committed(ap_uow_t *uow)
{
    if (uow->committed && uow->cache)
        ap_product_cache_move_all(uow->committed, uow->cache);
    cache_clear(uow);
}

/* The number of the innermost open scope: what the transaction's cache tags puts with.
 * Deeper than scope_ids has room for, the deepest it has stands in (a rollback then drops a
 * little more than it must). */
static uint64_t current_scope(const ap_uow_t *uow)
{
    size_t max = sizeof uow->scope_ids / sizeof *uow->scope_ids - 1;
    return uow->scope_ids[uow->depth < max ? uow->depth : max];
}

ap_err_t ap_uow_begin(ap_uow_t *uow)
{
    ap_err_t err = uow->ops->begin(uow);
    size_t max = sizeof uow->scope_ids / sizeof *uow->scope_ids - 1;
    if (err == AP_OK && ++uow->depth <= max)
        uow->scope_ids[uow->depth] = ++uow->scopes_begun;
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
        keep_committed(uow);
    return AP_OK;
}

void ap_uow_rollback(ap_uow_t *uow)
{
    if (uow->depth == 0)
        return;
    uint64_t scope = current_scope(uow);
    uow->ops->rollback(uow);
    uow->depth--;
    /* What the scope changed is gone, and so are the events it recorded; the transaction's
     * cache holds what the scope and the ones nested in it committed: that goes too (what
     * it handed out is forgotten). Committed products are untouched: the ones this
     * transaction used were taken out of that cache, not copied. */
    ap_uow_forget(uow);
    if (uow->depth == 0)
        cache_clear(uow);
    else if (uow->cache)
        ap_product_cache_drop_from(uow->cache, scope);
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

/*
 * Brings skus[0..n) (distinct, none handed out or in the transaction's cache) into the
 * transaction's cache in one round trip: a kept committed product when storage still holds
 * its version, a freshly loaded one otherwise. Skus storage does not know stay out.
 */
static ap_err_t refresh(ap_uow_t *uow, const char *const *skus, size_t n)
{
    int64_t *known = malloc(n * sizeof *known), *stored = malloc(n * sizeof *stored);
    ap_product_t **loaded = calloc(n, sizeof *loaded);
    ap_err_t err = AP_ERR_NOMEM;

    if (!known || !stored || !loaded || !tx_cache(uow))
        goto out;
    /* Every known[i] is written before storage is asked, whatever happens after. */
    for (size_t i = 0; i < n; i++) {
        const ap_product_t *kept =
            uow->committed ? ap_product_cache_peek(uow->committed, skus[i]) : NULL;
        known[i] = kept ? kept->version_number : -1;
    }
    err = uow->ops->repo.load_many(uow, skus, known, n, stored, loaded);
    if (err)
        goto out;
    for (size_t i = 0; i < n; i++) {
        ap_product_t *kept =
            uow->committed ? ap_product_cache_take(uow->committed, skus[i]) : NULL;
        if (loaded[i]) {
            ap_product_free(kept); /* stale */
            ap_product_cache_put_at(uow->cache, loaded[i], current_scope(uow));
        } else if (kept && stored[i] == known[i]) {
            ap_product_cache_put_at(uow->cache, kept, current_scope(uow));
        } else {
            ap_product_free(kept);
        }
    }
out:
    free(known);
    free(stored);
    free(loaded);
    return err;
}

/* A product that may be kept from an earlier transaction: confirm it, then hand it out. */
static ap_err_t get_kept(ap_uow_t *uow, const char *sku, ap_product_t **out)
{
    ap_err_t err = refresh(uow, &sku, 1);
    if (err)
        return err;
    ap_product_t *product = cache_take(uow, sku);
    return product ? hand_out(uow, product, out) : AP_ERR_NOT_FOUND;
}

ap_err_t ap_uow_get(ap_uow_t *uow, const char *sku, ap_product_t **out)
{
    ap_product_t *product = seen_by_sku(uow, sku);
    if (product) {
        *out = product;
        return AP_OK;
    }
    if ((product = cache_take(uow, sku)))
        return hand_out(uow, product, out);
    if (uow->committed && ap_product_cache_peek(uow->committed, sku))
        return get_kept(uow, sku, out);
    ap_err_t err = uow->ops->repo.load(uow, sku, &product);
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
    const ap_product_t *cached;
    ap_product_t *product;
    if (uow->cache && (cached = ap_product_cache_peek_by_batchref(uow->cache, ref)))
        return hand_out(uow, cache_take(uow, cached->sku), out);
    /* A batch never moves to another sku, so a kept product names the sku to confirm. */
    if (uow->committed && (cached = ap_product_cache_peek_by_batchref(uow->committed, ref))) {
        char sku[AP_STR_SIZE];
        memcpy(sku, cached->sku, sizeof sku);
        ap_err_t err = get_kept(uow, sku, out);
        if (err != AP_ERR_NOT_FOUND)
            return err;
    }
    ap_err_t err = uow->ops->repo.load_by_batchref(uow, ref, &product);
    if (err)
        return err;
    return hand_out(uow, product, out);
}

/* True when `sku` is handed out, in the transaction's cache or already wanted. */
static bool known_sku(const ap_uow_t *uow, const char *sku, const ap_strset_t *wanted)
{
    return ap_product_cache_peek(uow->cache, sku) || seen_by_sku(uow, sku) ||
           ap_strset_find(wanted, sku, NULL);
}

/*
 * The lines of orders orderids[i] of the products of skus[i] that the transaction's cache
 * holds and that do not know them yet, in one round trip. The products are taken out of
 * the cache for the call and put back after.
 */
static void prefetch_orders(ap_uow_t *uow, const char *const *skus, const char *const *orderids,
                            size_t n)
{
    ap_product_t **taken = malloc(n * sizeof *taken);    /* distinct, out of the cache */
    ap_product_t **products = malloc(n * sizeof *products);
    const char **wanted = malloc(n * sizeof *wanted);
    ap_strset_t by_sku; /* taken[] by sku */
    bool indexed = ap_strset_init(&by_sku, n);
    size_t ntaken = 0, m = 0;

    for (size_t i = 0; indexed && taken && products && wanted && i < n; i++) {
        if (!orderids[i] || !orderids[i][0])
            continue;
        size_t at;
        ap_product_t *product = ap_strset_find(&by_sku, skus[i], &at) ? taken[at] : NULL;
        if (!product) {
            if (!(product = cache_take(uow, skus[i])))
                continue;
            taken[ntaken] = product;
            if (ap_strset_add(&by_sku, product->sku, ntaken++, NULL) != AP_STRSET_ADDED)
                break; /* out of memory: what is taken goes back below */
        }
        if (!ap_product_knows_order(product, orderids[i])) {
            products[m] = product;
            wanted[m++] = orderids[i];
        }
    }
    if (m > 0)
        (void)uow->ops->repo.load_orders(uow, products, wanted, m); /* a hint, like the rest */
    ap_strset_free(&by_sku); /* before the products go back: it points at their skus */
    for (size_t i = 0; i < ntaken; i++)
        ap_product_cache_put_at(uow->cache, taken[i], current_scope(uow));
    free(taken);
    free(products);
    free(wanted);
}

void ap_uow_prefetch(ap_uow_t *uow, const char *const *skus, const char *const *orderids,
                     size_t nskus, const char *const *refs, size_t nrefs)
{
    const char **wanted = NULL;
    char(*ref_skus)[AP_STR_SIZE] = NULL;
    ap_strset_t wanted_set = {0}; /* wanted[] */
    size_t nwanted = 0;

    if (!uow->ops->repo.load_many || uow->depth == 0 || nskus + nrefs == 0 || !tx_cache(uow))
        return;
    if (!(wanted = malloc((nskus + nrefs) * sizeof *wanted)) ||
        (nrefs && !(ref_skus = malloc(nrefs * sizeof *ref_skus))) ||
        !ap_strset_init(&wanted_set, nskus + nrefs))
        goto out;
    for (size_t i = 0; i < nskus; i++) {
        if (known_sku(uow, skus[i], &wanted_set))
            continue;
        if (ap_strset_add(&wanted_set, skus[i], nwanted, NULL) != AP_STRSET_ADDED)
            goto out; /* out of memory: no hint */
        wanted[nwanted++] = skus[i];
    }
    /* A batch never moves to another sku: a kept product holding the ref names it. Copied,
     * because refreshing may free that product. */
    for (size_t i = 0; i < nrefs && uow->committed; i++) {
        const ap_product_t *kept = ap_product_cache_peek_by_batchref(uow->committed, refs[i]);
        if (!kept || known_sku(uow, kept->sku, &wanted_set))
            continue;
        memcpy(ref_skus[i], kept->sku, AP_STR_SIZE);
        if (ap_strset_add(&wanted_set, ref_skus[i], nwanted, NULL) != AP_STRSET_ADDED)
            goto out;
        wanted[nwanted++] = ref_skus[i];
    }
    if (nwanted > 0)
        (void)refresh(uow, wanted, nwanted); /* a hint: later gets load what is missing */
    if (orderids && uow->ops->repo.load_orders)
        prefetch_orders(uow, skus, orderids, nskus);
out:
    ap_strset_free(&wanted_set);
    free(wanted);
    free(ref_skus);
}

/*
 * Storage is asked about lines as the open transaction sees them: with what earlier scopes
 * wrote at their commit, without what this scope changed so far (the model says where older
 * lines start, ap_product_stored_newest; a line taken back is still there, so its order
 * waits for the commit).
 */
ap_err_t ap_uow_load_order(ap_uow_t *uow, ap_product_t *product, const char *orderid)
{
    if (ap_product_knows_order(product, orderid))
        return AP_OK;
    if (!uow->ops->repo.load_orders || ap_product_removal_pending(product, orderid))
        return AP_ERR_INTERNAL;
    return uow->ops->repo.load_orders(uow, &product, &orderid, 1);
}

ap_err_t ap_uow_load_older_lines(ap_uow_t *uow, ap_product_t *product, const char *ref)
{
    const ap_batch_t *batch = ap_product_find_batch(product, ref);
    if (!batch || ap_batch_unknown_qty(batch) <= 0 || !uow->ops->repo.load_older_lines)
        return AP_ERR_INTERNAL;
    /* Twice what memory holds (at least 16): a long decrease takes a few round trips. */
    size_t max = batch->nlines < 8 ? 16 : 2 * batch->nlines;
    return uow->ops->repo.load_older_lines(uow, product, (size_t)(batch - product->batches), max);
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
    /* The handler's scope committed these: later scopes of the transaction may reuse them,
     * or, when the scope was the transaction, later transactions. */
    ap_product_cache_t *keep = uow->depth > 0 ? tx_cache(uow) : uow->committed;
    if (err || !keep) {
        ap_uow_forget(uow);
        return err;
    }
    for (size_t i = 0; i < uow->nseen; i++) {
        ap_product_clear_events(uow->seen[i]);
        ap_product_cache_put_at(keep, uow->seen[i], current_scope(uow));
    }
    uow->nseen = 0;
    return AP_OK;
}

ap_err_t ap_uow_view_add(ap_uow_t *uow, const char *orderid, const char *sku,
                         const char *batchref)
{
    return uow->ops->view.add(uow, orderid, sku, batchref);
}

ap_err_t ap_uow_view_remove(ap_uow_t *uow, const char *orderid, const char *sku,
                            const char *batchref)
{
    return uow->ops->view.remove(uow, orderid, sku, batchref);
}

ap_err_t ap_uow_claim_partition(ap_uow_t *uow, const char *group, const char *topic,
                                int32_t partition, int64_t *epoch, int64_t *next_offset)
{
    return uow->ops->offsets.claim(uow, group, topic, partition, epoch, next_offset);
}

ap_err_t ap_uow_advance_offset(ap_uow_t *uow, const char *group, const char *topic,
                               int32_t partition, int64_t epoch, int64_t expected, int64_t next)
{
    return uow->ops->offsets.advance(uow, group, topic, partition, epoch, expected, next);
}

void ap_uow_free(ap_uow_t *uow)
{
    if (!uow)
        return;
    while (uow->depth > 0)
        ap_uow_rollback(uow);
    ap_uow_forget(uow);
    ap_product_cache_free(uow->cache);
    ap_product_cache_free(uow->committed);
    free(uow->seen);
    uow->seen = NULL;
    uow->cache = NULL;
    uow->committed = NULL;
    uow->ops->free(uow);
}
