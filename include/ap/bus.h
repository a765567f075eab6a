/*
 * bus.h - the message bus and the dependencies handlers receive.
 *
 * ap_bus_handle runs a FIFO queue that starts with one command: the command goes to exactly
 * one handler, each event to every handler registered for it, in order; after each handler
 * the events recorded by the products the unit of work handed out join the queue. A failing
 * command undoes the command; a failing event handler is logged and counted, its own scope
 * is undone, and the rest still run. A transient failure anywhere stops the run so the
 * caller can retry the whole command (ap_bus_execute does exactly that).
 *
 * Handlers get everything through one `const ap_deps_t *`, built by the composition root
 * (bootstrap.c); there are no globals.
 */
#ifndef AP_BUS_H
#define AP_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "ap/error.h"
#include "ap/messages.h"
#include "ap/ports.h"

#define AP_NOTIFY_TO_DEFAULT "stock@made.com"

typedef struct ap_deps {
    ap_uow_t *uow;
    ap_publisher_t *publisher;
    ap_notifier_t *notifier;
    ap_clock_t *clock;
    const char *notify_to; /* out-of-stock emails go here */
} ap_deps_t;

/* A handler. On a rejection it writes a one-line human message into `why`. */
typedef ap_err_t (*ap_handler_fn)(const ap_deps_t *deps, const ap_msg_t *msg, char *why,
                                  size_t whylen);

#define AP_MAX_EVENT_HANDLERS 4

typedef struct ap_handler_table {
    ap_handler_fn command[AP_MSG__COUNT];
    ap_handler_fn event[AP_MSG__COUNT][AP_MAX_EVENT_HANDLERS]; /* NULL-terminated */
} ap_handler_table_t;

/* The domain's handlers (service/handlers.c). */
extern const ap_handler_table_t ap_default_handlers;

typedef struct ap_bus_stats {
    uint64_t commands_ok;
    uint64_t commands_rejected;
    uint64_t commands_failed;
    uint64_t events_handled;
    uint64_t event_handler_failures;
    uint64_t retries;
} ap_bus_stats_t;

typedef struct ap_retry_policy {
    unsigned max_attempts;   /* including the first */
    int64_t base_backoff_ms; /* doubled each attempt, full jitter */
    int64_t max_backoff_ms;
} ap_retry_policy_t;

#define AP_RETRY_POLICY_DEFAULT ((ap_retry_policy_t){.max_attempts = 8, .base_backoff_ms = 2, .max_backoff_ms = 200})

/*
 * Optional: sees each event a command causes, once the event's handlers have run, and NULL
 * whenever ap_bus_handle starts (again), so an observer forgets what a failed attempt showed
 * it. For an entrypoint that reports what a command did (the HTTP API's batchref).
 */
typedef void (*ap_event_observer_fn)(void *ctx, const ap_msg_t *event);

typedef struct ap_bus {
    const ap_deps_t *deps;
    ap_event_observer_fn observer;
    void *observer_ctx;
    const ap_handler_table_t *handlers;
    ap_retry_policy_t retry;
    ap_msg_meta_t meta; /* the provenance of the command being handled */
    ap_msg_t *queue;    /* ring of pending messages */
    size_t qhead, qlen, qcap;
    ap_bus_stats_t stats;
} ap_bus_t;

/* `deps` and `handlers` are borrowed and must outlive the bus. */
void ap_bus_init(ap_bus_t *bus, const ap_deps_t *deps, const ap_handler_table_t *handlers);
void ap_bus_release(ap_bus_t *bus);

/* Sets (or, with NULL, clears) the bus's event observer; the caller's thread only. */
void ap_bus_observe(ap_bus_t *bus, ap_event_observer_fn observer, void *ctx);

/*
 * Runs one command and everything it causes, in the caller's unit of work scope (the caller
 * owns the transaction). Returns AP_OK, a rejection (with `why`), a transient error (the
 * caller must roll back its scope and may retry) or another failure.
 */
ap_err_t ap_bus_handle(ap_bus_t *bus, const ap_msg_t *cmd, char *why, size_t whylen);

/*
 * ap_bus_handle inside a scope of its own (a savepoint when a transaction is open), retried
 * from scratch with jittered exponential backoff on a conflict, up to the bus's retry
 * policy. A lost connection (AP_ERR_UNAVAILABLE) is retried the same way only when no
 * transaction was open: an open one is lost with the connection, so it goes back to the
 * caller. The scope is committed on success and rolled back otherwise, so a
 * rejected command leaves nothing behind.
 */
ap_err_t ap_bus_execute(ap_bus_t *bus, const ap_msg_t *cmd, char *why, size_t whylen);

#endif
