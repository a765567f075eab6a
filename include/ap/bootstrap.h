/*
 * bootstrap.h - the composition root: the only place that knows which adapter fills which
 * port. Production wiring and the unit tests' fakes go through the same ap_bootstrap.
 */
#ifndef AP_BOOTSTRAP_H
#define AP_BOOTSTRAP_H

#include "ap/avro.h"
#include "ap/bus.h"
#include "ap/config.h"
#include "ap/log_adapters.h"
#include "ap/outbox.h"
#include "ap/ports.h"
#include "ap/registry.h"

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

/*
 * The production wiring for `run`: a PostgreSQL unit of work, the transactional outbox as
 * publisher (Avro per AVRO_WIRE_FORMAT; with `confluent`, every event schema registered
 * under `<topic>-value` first), the email outbox as notifier (email.h) and the system clock.
 */
typedef struct ap_runtime {
    ap_app_t app;
    ap_avro_codec_t *codec;
    ap_registry_t *registry; /* NULL unless AVRO_WIRE_FORMAT=confluent */
    ap_outbox_t *outbox;     /* the app's publisher, seen as an outbox; owned by app */
} ap_runtime_t;

ap_err_t ap_bootstrap_runtime(ap_runtime_t *rt, const ap_config_t *cfg);
void ap_runtime_release(ap_runtime_t *rt);

#endif
