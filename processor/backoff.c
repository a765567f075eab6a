/*
 * backoff.c - the doubling wait (ap/backoff.h).
 */
#include "ap/backoff.h"

int64_t ap_backoff_ms(int64_t min, int64_t max, unsigned attempt)
{
    int64_t ms = min;
    for (unsigned i = 0; i < attempt && ms < max; i++)
        ms = ms >= max / 2 ? max : ms * 2;
    if (ms > max)
        ms = max;
    return ms < 1 ? 1 : ms;
}

int64_t ap_backoff_jittered_ms(int64_t min, int64_t max, unsigned attempt, uint32_t random)
{
    int64_t ms = ap_backoff_ms(min, max, attempt);
    return ms - (int64_t)(random % (uint64_t)(ms / 2 + 1));
}
