/*
 * backoff.h - the one backoff rule: a wait that starts at `min` and doubles with each failed
 * attempt until `max`. The bus retries a conflict with it, the consumer a lost database, the
 * relay and the email sender a lost session or a failing batch, main a database that is not
 * up yet. Each caller keeps its own attempt count and decides how to wait.
 *
 * Pure C, no state, any thread.
 */
#ifndef AP_BACKOFF_H
#define AP_BACKOFF_H

#include <stdint.h>

/* `min` doubled `attempt` times, at most `max` (and at least 1): attempt 0 waits `min`. */
int64_t ap_backoff_ms(int64_t min, int64_t max, unsigned attempt);

/*
 * ap_backoff_ms less a share of up to half of it chosen by `random` (any uniform value), so
 * that those who failed together do not all come back together: in [wait - wait/2, wait].
 */
int64_t ap_backoff_jittered_ms(int64_t min, int64_t max, unsigned attempt, uint32_t random);

#endif
