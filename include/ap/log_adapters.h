/*
 * log_adapters.h - adapters with no infrastructure behind them (processor/adapters/
 * log_adapters.c): a notifier that only logs, and the system clock. The composition root
 * picks them; nothing else needs to know they exist.
 */
#ifndef AP_LOG_ADAPTERS_H
#define AP_LOG_ADAPTERS_H

#include "ap/ports.h"

/* A notifier that logs each message at info level (until the email adapter arrives).
 * Caller frees with ap_notifier_free. */
ap_notifier_t *ap_log_notifier_new(void);

/* The system clock: CLOCK_MONOTONIC milliseconds, nanosleep. Caller frees with
 * ap_clock_free. Any thread. */
ap_clock_t *ap_system_clock_new(void);

#endif
