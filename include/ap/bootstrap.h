/*
 * bootstrap.h - the composition root: the only place that knows which adapter fills which
 * port. Production wiring and the unit tests' fakes go through the same ap_bootstrap.
 */
#ifndef AP_BOOTSTRAP_H
#define AP_BOOTSTRAP_H

#include "ap/bus.h"
#include "ap/ports.h"

typedef struct ap_app {
    ap_deps_t deps;
    ap_bus_t bus;
} ap_app_t;

/*
 * Wires the bus with the domain's handlers around the given adapters. Takes ownership of
 * every adapter (freed by ap_app_release, also on failure). `notify_to` is copied;
 * NULL means AP_NOTIFY_TO_DEFAULT.
 */
ap_err_t ap_bootstrap(ap_app_t *app, ap_uow_t *uow, ap_publisher_t *publisher,
                      ap_notifier_t *notifier, ap_clock_t *clock, const char *notify_to);

void ap_app_release(ap_app_t *app);

/* Adapters with no infrastructure behind them, used by production wiring until the outbox
 * and email arrive: they log at info level. Caller frees. */
ap_publisher_t *ap_log_publisher_new(void);
ap_notifier_t *ap_log_notifier_new(void);
ap_clock_t *ap_system_clock_new(void);

#endif
