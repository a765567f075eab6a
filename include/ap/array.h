/*
 * array.h - the one growable-array helper, in the manner of git's ALLOC_GROW: an array is a
 * pointer, a count the caller keeps, and a capacity this helper grows geometrically.
 *
 *     ap_line_t *lines = NULL;
 *     size_t nlines = 0, cap = 0;
 *     if (!AP_ARRAY_RESERVE(lines, cap, nlines + 1))
 *         return AP_ERR_NOMEM;
 *     lines[nlines++] = line;
 *     ...
 *     free(lines);
 *
 * It is not a container: it never frees, copies or counts elements. Pure C, any thread.
 */
#ifndef AP_ARRAY_H
#define AP_ARRAY_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Makes room for at least `need` elements of `size` bytes in the array whose pointer is at
 * `itemsp` (a T **), doubling the capacity *cap (from 4) until it fits. On failure (out of
 * memory, or a size that overflows) returns false and leaves the array and *cap alone.
 */
bool ap_array_reserve(void *itemsp, size_t *cap, size_t need, size_t size);

/* ap_array_reserve for an array `items` (any T *) and its capacity `cap` (a size_t). */
#define AP_ARRAY_RESERVE(items, cap, need) \
    ap_array_reserve(&(items), &(cap), (need), sizeof *(items))

#endif
