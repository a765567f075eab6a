/*
 * strset.h - the strings seen so far in one pass over a batch, for "have I met this one
 * before, and where?" in constant time (the batch's loops asked it by a linear search,
 * quadratic in the batch's size).
 *
 *     ap_strset_t seen;
 *     if (!ap_strset_init(&seen, n))
 *         return AP_ERR_NOMEM;
 *     for (size_t i = 0; i < n; i++) {
 *         size_t first;
 *         if (ap_strset_add(&seen, ids[i], i, &first) == AP_STRSET_FOUND)
 *             ... ids[i] repeats ids[first] ...
 *     }
 *     ap_strset_free(&seen);
 *
 * The set holds pointers to the caller's strings, which must outlive it, and a value per
 * string (an index, typically). Room for `capacity` strings is allocated at init: adding
 * never allocates an entry, only the hash table's buckets (uthash). Not thread-safe.
 */
#ifndef AP_STRSET_H
#define AP_STRSET_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ap_strset_entry ap_strset_entry_t;

typedef struct {
    ap_strset_entry_t *entries; /* `capacity` of them */
    ap_strset_entry_t *head;    /* uthash head */
    size_t count, capacity;
} ap_strset_t;

typedef enum {
    AP_STRSET_ADDED, /* new: stored with its value */
    AP_STRSET_FOUND, /* already there: *value is the one stored first */
    AP_STRSET_NOMEM  /* not stored: the set is full, or its table could not grow */
} ap_strset_add_t;

/* An empty set with room for `capacity` strings; false when out of memory. */
bool ap_strset_init(ap_strset_t *set, size_t capacity);

/* Adds `key` with `value` unless it is there; *value (optional) gets the stored value. */
ap_strset_add_t ap_strset_add(ap_strset_t *set, const char *key, size_t value, size_t *stored);

/* True when `key` is in the set; *value (optional) gets its value. */
bool ap_strset_find(const ap_strset_t *set, const char *key, size_t *value);

/* Frees what the set allocated (never the strings); the set is then empty and unusable. */
void ap_strset_free(ap_strset_t *set);

#endif
