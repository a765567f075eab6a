/*
 * bootstrap.c - the composition root. It decides which adapter fills which port and hands
 * the bus its handlers; nothing else in the program does either.
 */
#include "ap/bootstrap.h"

#include <stdlib.h>
#include <string.h>

ap_err_t ap_bootstrap(ap_app_t *app, ap_uow_t *uow, ap_publisher_t *publisher,
                      ap_notifier_t *notifier, ap_clock_t *clock, const char *notify_to)
{
    memset(app, 0, sizeof *app);
    app->deps.uow = uow;
    app->deps.publisher = publisher;
    app->deps.notifier = notifier;
    app->deps.clock = clock;
    app->deps.notify_to = strdup(notify_to ? notify_to : AP_NOTIFY_TO_DEFAULT);
    ap_bus_init(&app->bus, &app->deps, &ap_default_handlers);
    if (!uow || !publisher || !notifier || !clock || !app->deps.notify_to) {
        ap_app_release(app);
        return AP_ERR_NOMEM;
    }
    return AP_OK;
}

void ap_app_release(ap_app_t *app)
{
    ap_bus_release(&app->bus);
    ap_uow_free(app->deps.uow);
    ap_publisher_free(app->deps.publisher);
    ap_notifier_free(app->deps.notifier);
    ap_clock_free(app->deps.clock);
    free((char *)app->deps.notify_to);
    memset(app, 0, sizeof *app);
}
