/*
 * product_cache.c - a uthash table of products by sku, and one of their batches by ref.
 * uthash keeps insertion order, and every use takes a product out and puts it back, so the
 * head of the table is the least recently used product: eviction drops from there.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Out of memory while growing the table is not fatal: the product is just not cached. */
#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(obj) (oom = true)
#include <uthash.h>

#include "ap/product_cache.h"

typedef struct entry entry_t;

/* A batch of a cached product, in the table by ref (the key is the batch's ref). */
typedef struct ref_entry {
    entry_t *owner;
    const char *ref; /* the batch's, in owner->product */
    UT_hash_handle hh;
} ref_entry_t;

struct entry {
    ap_product_t *product; /* owned; the table's key is product->sku */
    size_t bytes;
    ref_entry_t *refs;     /* one per batch, in the cache's ref table */
    size_t nrefs;
    uint64_t scope;        /* ap_product_cache_put_at */
    UT_hash_handle hh;
};

struct ap_product_cache {
    entry_t *entries; /* uthash head, oldest first */
    ref_entry_t *by_ref;
    size_t max_bytes, bytes;
    uint64_t evicted;
    bool keep_lines;
};

ap_product_cache_t *ap_product_cache_new(size_t max_bytes, bool keep_lines)
{
    ap_product_cache_t *cache = calloc(1, sizeof *cache);
    if (cache) {
        cache->max_bytes = max_bytes;
        cache->keep_lines = keep_lines;
    }
    return cache;
}

/* Unlinks an entry and hands its product over. */
static ap_product_t *unlink_entry(ap_product_cache_t *cache, entry_t *entry)
{
    ap_product_t *product = entry->product;
    for (size_t i = 0; i < entry->nrefs; i++)
        HASH_DELETE(hh, cache->by_ref, &entry->refs[i]);
    HASH_DELETE(hh, cache->entries, entry);
    cache->bytes -= entry->bytes;
    free(entry->refs);
    free(entry);
    return product;
}

void ap_product_cache_clear(ap_product_cache_t *cache)
{
    entry_t *entry, *next;
    HASH_ITER(hh, cache->entries, entry, next) {
        ap_product_free(unlink_entry(cache, entry));
    }
}

void ap_product_cache_free(ap_product_cache_t *cache)
{
    if (!cache)
        return;
    ap_product_cache_clear(cache);
    free(cache);
}

ap_product_t *ap_product_cache_take(ap_product_cache_t *cache, const char *sku)
{
    entry_t *entry;
    HASH_FIND_STR(cache->entries, sku, entry);
    return entry ? unlink_entry(cache, entry) : NULL;
}

const ap_product_t *ap_product_cache_peek_by_batchref(const ap_product_cache_t *cache,
                                                      const char *ref)
{
    ref_entry_t *found;
    HASH_FIND_STR(cache->by_ref, ref, found);
    return found ? found->owner->product : NULL;
}

const ap_product_t *ap_product_cache_peek(const ap_product_cache_t *cache, const char *sku)
{
    entry_t *entry;
    HASH_FIND_STR(cache->entries, sku, entry);
    return entry ? entry->product : NULL;
}

void ap_product_cache_put(ap_product_cache_t *cache, ap_product_t *product)
{
    ap_product_cache_put_at(cache, product, 0);
}

void ap_product_cache_drop_from(ap_product_cache_t *cache, uint64_t scope)
{
    entry_t *entry, *next;
    HASH_ITER(hh, cache->entries, entry, next) {
        if (entry->scope >= scope)
            ap_product_free(unlink_entry(cache, entry));
    }
}

void ap_product_cache_put_at(ap_product_cache_t *cache, ap_product_t *product, uint64_t scope)
{
    bool oom = false;
    ap_product_free(ap_product_cache_take(cache, product->sku));

    entry_t *entry = malloc(sizeof *entry);
    if (!entry) {
        ap_product_free(product); /* only a cache: do without */
        return;
    }
    ap_product_trim(product);
    if (!cache->keep_lines)
        ap_product_forget_lines(product);
    entry->product = product;
    entry->scope = scope;
    entry->nrefs = 0;
    entry->refs = product->nbatches ? calloc(product->nbatches, sizeof *entry->refs) : NULL;
    entry->bytes = ap_product_footprint(product) + product->nbatches * sizeof *entry->refs;
    if (product->nbatches && !entry->refs) {
        free(entry);
        ap_product_free(product);
        return;
    }
    HASH_ADD_KEYPTR(hh, cache->entries, product->sku, strlen(product->sku), entry);
    if (oom) {
        free(entry->refs);
        free(entry);
        ap_product_free(product);
        return;
    }
    cache->bytes += entry->bytes;
    for (size_t i = 0; i < product->nbatches && !oom; i++) {
        ref_entry_t *ref = &entry->refs[i];
        ref->owner = entry;
        ref->ref = product->batches[i].ref;
        HASH_ADD_KEYPTR(hh, cache->by_ref, ref->ref, strlen(ref->ref), ref);
        if (!oom)
            entry->nrefs++;
    }
    if (oom) { /* the ref table could not grow: do without this product */
        ap_product_free(unlink_entry(cache, entry));
        return;
    }
    while (cache->max_bytes && cache->bytes > cache->max_bytes && cache->entries) {
        ap_product_free(unlink_entry(cache, cache->entries));
        cache->evicted++;
    }
}

void ap_product_cache_move_all(ap_product_cache_t *to, ap_product_cache_t *from)
{
    while (from->entries)
        ap_product_cache_put_at(to, unlink_entry(from, from->entries), 0);
}

ap_product_cache_stats_t ap_product_cache_stats(const ap_product_cache_t *cache)
{
    return (ap_product_cache_stats_t){
        .products = HASH_COUNT(cache->entries),
        .bytes = cache->bytes,
        .evicted = cache->evicted,
    };
}
