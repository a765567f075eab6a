/*
 * log_adapters.h - the adapter with no infrastructure behind it (processor/adapters/
 * log_adapters.c): the system clock. The composition root picks it.
 */
#ifndef AP_LOG_ADAPTERS_H
#define AP_LOG_ADAPTERS_H

#include "ap/ports.h"

/* The system clock: CLOCK_MONOTONIC milliseconds, nanosleep. Caller frees with
 * ap_clock_free. Any thread. */
ap_clock_t *ap_system_clock_new(void);

#endif
