/*
 * strset.c - a set of strings with a value each (strset.h): uthash over entries allocated
 * once, up front.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Out of memory while growing the buckets is reported, not fatal (ap_strset_add). */
#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(obj) (oom = true)
#include <uthash.h>

#include "ap/strset.h"

struct ap_strset_entry {
    const char *key; /* the caller's */
    size_t value;
    UT_hash_handle hh;
};

bool ap_strset_init(ap_strset_t *set, size_t capacity)
{
    *set = (ap_strset_t){.capacity = capacity};
    set->entries = calloc(capacity ? capacity : 1, sizeof *set->entries);
    return set->entries != NULL;
}

/* The entry of `key` (length len, hash hash), or NULL. */
static ap_strset_entry_t *lookup(const ap_strset_t *set, const char *key, size_t len,
                                 unsigned hash)
{
    ap_strset_entry_t *entry = NULL;
    HASH_FIND_BYHASHVALUE(hh, set->head, key, len, hash, entry);
    return entry;
}

bool ap_strset_find(const ap_strset_t *set, const char *key, size_t *value)
{
    size_t len = strlen(key);
    unsigned hash;
    HASH_VALUE(key, len, hash);
    const ap_strset_entry_t *entry = lookup(set, key, len, hash);
    if (entry && value)
        *value = entry->value;
    return entry != NULL;
}

ap_strset_add_t ap_strset_add(ap_strset_t *set, const char *key, size_t value, size_t *stored)
{
    /* One strlen and one hash for both the lookup and the insertion. */
    size_t len = strlen(key);
    unsigned hash;
    HASH_VALUE(key, len, hash);
    const ap_strset_entry_t *found = lookup(set, key, len, hash);
    if (found) {
        if (stored)
            *stored = found->value;
        return AP_STRSET_FOUND;
    }
    if (set->count == set->capacity)
        return AP_STRSET_NOMEM;
    ap_strset_entry_t *entry = &set->entries[set->count];
    entry->key = key;
    entry->value = value;
    bool oom = false;
    HASH_ADD_KEYPTR_BYHASHVALUE(hh, set->head, entry->key, len, hash, entry);
    if (oom)
        return AP_STRSET_NOMEM; /* uthash left the entry out of the table */
    set->count++;
    if (stored)
        *stored = value;
    return AP_STRSET_ADDED;
}

void ap_strset_free(ap_strset_t *set)
{
    HASH_CLEAR(hh, set->head);
    free(set->entries);
    *set = (ap_strset_t){0};
}
