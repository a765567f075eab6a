/*
 * product_cache.h - products kept in memory, found by sku, bounded by an estimate of the
 * bytes they hold.
 *
 * The unit of work uses two: one for the products earlier scopes of the open transaction
 * committed (unbounded, emptied at its end), and one for products as storage last committed
 * them, kept between transactions so a product is not loaded again with every batch. The
 * second is only a hint: before a cached product is used, storage confirms its version.
 *
 * Products move in and out (put and take): a product is in one place at a time, so a
 * transaction that rolls back cannot leave its changes in a cache.
 */
#ifndef AP_PRODUCT_CACHE_H
#define AP_PRODUCT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ap/model.h"

typedef struct ap_product_cache ap_product_cache_t;

typedef struct ap_product_cache_stats {
    size_t products;
    size_t bytes;      /* ap_product_footprint of what it holds */
    uint64_t evicted;  /* products dropped to stay under the limit */
} ap_product_cache_stats_t;

/* max_bytes 0: unbounded. Without keep_lines, every product put in forgets its lines
 * (ap_product_forget_lines): storage holds them, and the cache's memory stays independent
 * of how many each product has. NULL on out-of-memory. */
ap_product_cache_t *ap_product_cache_new(size_t max_bytes, bool keep_lines);
void ap_product_cache_free(ap_product_cache_t *cache);

/* Takes ownership (and trims it: ap_product_trim). A product with the same sku is replaced.
 * Then, while over the limit, the products put longest ago are dropped (never the one just
 * put, unless it alone is over). */
void ap_product_cache_put(ap_product_cache_t *cache, ap_product_t *product);

/* The same, for a product as scope number `scope` left it (the unit of work's transaction
 * cache numbers its scopes in the order they begin; put is put_at scope 0). */
void ap_product_cache_put_at(ap_product_cache_t *cache, ap_product_t *product, uint64_t scope);

/* Drops (frees) every product put by scope `scope` or any later one: what a scope rolled
 * back, with the scopes nested in it, left in the cache. */
void ap_product_cache_drop_from(ap_product_cache_t *cache, uint64_t scope);

/* Hands the product over (the caller owns it now), or NULL. */
ap_product_t *ap_product_cache_take(ap_product_cache_t *cache, const char *sku);
/* Looks without taking; NULL when absent. */
const ap_product_t *ap_product_cache_peek(const ap_product_cache_t *cache, const char *sku);
const ap_product_t *ap_product_cache_peek_by_batchref(const ap_product_cache_t *cache,
                                                      const char *ref);

/* Moves every product of `from` into `to`, oldest first. */
void ap_product_cache_move_all(ap_product_cache_t *to, ap_product_cache_t *from);
void ap_product_cache_clear(ap_product_cache_t *cache);

ap_product_cache_stats_t ap_product_cache_stats(const ap_product_cache_t *cache);

#endif
