/*
 * array.c - the growable-array helper (ap/array.h). It only ever reallocates: the elements
 * and their count are the caller's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ap/array.h"

bool ap_array_reserve(void *itemsp, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap : 4;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return false;
        ncap *= 2;
    }
    if (size && ncap > SIZE_MAX / size)
        return false;
    /* The pointer is read and written as bytes: `itemsp` points to a T *, not a void *. */
    void *items;
    memcpy(&items, itemsp, sizeof items);
    void *grown = realloc(items, ncap * size);
    if (!grown)
        return false;
    memcpy(itemsp, &grown, sizeof grown);
    *cap = ncap;
    return true;
}
