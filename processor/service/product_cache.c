/*
 * product_cache.c - a uthash table of products by sku. uthash keeps insertion order, and
 * every use takes a product out and puts it back, so the head of the table is the least
 * recently used product: eviction drops from there.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Out of memory while growing the table is not fatal: the product is just not cached. */
#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(obj) (oom = true)
#include <uthash.h>

#include "ap/product_cache.h"

typedef struct entry {
    ap_product_t *product; /* owned; the table's key is product->sku */
    size_t bytes;
    UT_hash_handle hh;
} entry_t;

struct ap_product_cache {
    entry_t *entries; /* uthash head, oldest first */
    size_t max_bytes, bytes;
    uint64_t evicted;
};

ap_product_cache_t *ap_product_cache_new(size_t max_bytes)
{
    ap_product_cache_t *cache = calloc(1, sizeof *cache);
    if (cache)
        cache->max_bytes = max_bytes;
    return cache;
}

/* Unlinks an entry and hands its product over. */
static ap_product_t *unlink_entry(ap_product_cache_t *cache, entry_t *entry)
{
    ap_product_t *product = entry->product;
    HASH_DELETE(hh, cache->entries, entry);
    cache->bytes -= entry->bytes;
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
    for (const entry_t *entry = cache->entries; entry; entry = entry->hh.next) {
        if (ap_product_find_batch(entry->product, ref))
            return entry->product;
    }
    return NULL;
}

const ap_product_t *ap_product_cache_peek(const ap_product_cache_t *cache, const char *sku)
{
    entry_t *entry;
    HASH_FIND_STR(cache->entries, sku, entry);
    return entry ? entry->product : NULL;
}

void ap_product_cache_put(ap_product_cache_t *cache, ap_product_t *product)
{
    bool oom = false;
    ap_product_free(ap_product_cache_take(cache, product->sku));

    entry_t *entry = malloc(sizeof *entry);
    if (!entry) {
        ap_product_free(product); /* only a cache: do without */
        return;
    }
    ap_product_trim(product);
    entry->product = product;
    entry->bytes = ap_product_footprint(product);
    HASH_ADD_KEYPTR(hh, cache->entries, product->sku, strlen(product->sku), entry);
    if (oom) {
        free(entry);
        ap_product_free(product);
        return;
    }
    cache->bytes += entry->bytes;
    while (cache->max_bytes && cache->bytes > cache->max_bytes && cache->entries) {
        ap_product_free(unlink_entry(cache, cache->entries));
        cache->evicted++;
    }
}

void ap_product_cache_move_all(ap_product_cache_t *to, ap_product_cache_t *from)
{
    while (from->entries)
        ap_product_cache_put(to, unlink_entry(from, from->entries));
}

ap_product_cache_stats_t ap_product_cache_stats(const ap_product_cache_t *cache)
{
    return (ap_product_cache_stats_t){
        .products = HASH_COUNT(cache->entries),
        .bytes = cache->bytes,
        .evicted = cache->evicted,
    };
}
