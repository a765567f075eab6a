/*
 * bus.c - the message bus: one command in, a FIFO queue of everything it causes.
 *
 * The bus owns no transaction. ap_bus_handle runs inside whatever scope the caller opened;
 * ap_bus_execute adds a scope of its own per command and the retry-from-scratch policy for
 * conflicts. Handlers open their own, inner scopes (handlers.c), so an event handler that
 * fails undoes exactly its own work.
 */
#include <stdlib.h>
#include <string.h>

#include "ap/backoff.h"
#include "ap/bus.h"
#include "ap/log.h"

void ap_bus_init(ap_bus_t *bus, const ap_deps_t *deps, const ap_handler_table_t *handlers)
{
    memset(bus, 0, sizeof *bus);
    bus->deps = deps;
    bus->handlers = handlers;
    bus->retry = AP_RETRY_POLICY_DEFAULT;
}

void ap_bus_release(ap_bus_t *bus)
{
    free(bus->queue);
    bus->queue = NULL;
    bus->qcap = bus->qhead = bus->qlen = 0;
}

void ap_bus_observe(ap_bus_t *bus, ap_event_observer_fn observer, void *ctx)
{
    bus->observer = observer;
    bus->observer_ctx = ctx;
}

/* Appends to the ring buffer, growing it when full. */
static ap_err_t enqueue(ap_bus_t *bus, const ap_msg_t *msg)
{
    if (bus->qlen == bus->qcap) {
        size_t ncap = bus->qcap ? bus->qcap * 2 : 16;
        ap_msg_t *grown = malloc(ncap * sizeof *grown);
        if (!grown)
            return AP_ERR_NOMEM;
        for (size_t i = 0; i < bus->qlen; i++)
            grown[i] = bus->queue[(bus->qhead + i) % bus->qcap];
        free(bus->queue);
        bus->queue = grown;
        bus->qcap = ncap;
        bus->qhead = 0;
    }
    bus->queue[(bus->qhead + bus->qlen) % bus->qcap] = *msg;
    bus->qlen++;
    return AP_OK;
}

/* ap_event_sink_fn: a new event joins the queue carrying its command's provenance. */
static ap_err_t enqueue_event(void *ctx, const ap_msg_t *event)
{
    ap_bus_t *bus = ctx;
    ap_msg_t stamped = *event;
    stamped.meta = bus->meta;
    uint8_t bytes[16];
    for (size_t i = 0; i < sizeof bytes; i += 4) {
        uint32_t r = ap_clock_random(bus->deps->clock);
        memcpy(bytes + i, &r, 4);
    }
    ap_uuid4_format(bytes, stamped.meta.event_id);
    return enqueue(bus, &stamped);
}

static bool dequeue(ap_bus_t *bus, ap_msg_t *msg)
{
    if (bus->qlen == 0)
        return false;
    *msg = bus->queue[bus->qhead];
    bus->qhead = (bus->qhead + 1) % bus->qcap;
    bus->qlen--;
    return true;
}

static ap_err_t handle_command(ap_bus_t *bus, const ap_msg_t *cmd, char *why, size_t whylen)
{
    ap_handler_fn handler = bus->handlers->command[cmd->type];
    ap_err_t err = ap_command_validate(cmd, why, whylen);
    if (err)
        return err;
    if (!handler)
        return AP_ERR_INTERNAL;
    err = handler(bus->deps, cmd, why, whylen);
    if (err) {
        ap_uow_forget(bus->deps->uow);
        return err;
    }
    return ap_uow_collect_new_events(bus->deps->uow, enqueue_event, bus);
}

static ap_err_t handle_event(ap_bus_t *bus, const ap_msg_t *event)
{
    const ap_handler_fn *handlers = bus->handlers->event[event->type];

    for (size_t i = 0; i < AP_MAX_EVENT_HANDLERS && handlers[i]; i++) {
        char why[256] = "";
        ap_err_t err = handlers[i](bus->deps, event, why, sizeof why);
        if (err == AP_OK)
            err = ap_uow_collect_new_events(bus->deps->uow, enqueue_event, bus);
        else
            ap_uow_forget(bus->deps->uow);
        if (err == AP_OK)
            continue;
        /* A transient failure belongs to the whole command: it is retried from scratch. */
        if (ap_err_is_transient(err) || err == AP_ERR_NOMEM)
            return err;
        bus->stats.event_handler_failures++;
        AP_WARN("bus", "handler %zu for %s failed: %s%s%s", i, ap_msg_type_name(event->type),
                ap_strerror(err), why[0] ? ": " : "", why);
    }
    bus->stats.events_handled++;
    if (bus->observer)
        bus->observer(bus->observer_ctx, event);
    return AP_OK;
}

ap_err_t ap_bus_handle(ap_bus_t *bus, const ap_msg_t *cmd, char *why, size_t whylen)
{
    ap_err_t err;
    ap_msg_t msg;

    if (why && whylen)
        why[0] = '\0';
    bus->qhead = bus->qlen = 0;
    bus->meta = cmd->meta;
    if (bus->observer)
        bus->observer(bus->observer_ctx, NULL);
    if ((err = enqueue(bus, cmd)))
        return err;
    while (dequeue(bus, &msg)) {
        if (ap_msg_is_command(msg.type))
            err = handle_command(bus, &msg, why, whylen);
        else if (ap_msg_is_event(msg.type))
            err = handle_event(bus, &msg);
        else
            err = AP_ERR_INTERNAL;
        if (err) {
            bus->qhead = bus->qlen = 0;
            return err;
        }
    }
    return AP_OK;
}

/* Full jitter: a uniform wait in [1, min(max, base * 2^attempt)] milliseconds. */
static int64_t backoff_ms(const ap_retry_policy_t *policy, ap_clock_t *clock, unsigned attempt)
{
    int64_t cap = ap_backoff_ms(policy->base_backoff_ms, policy->max_backoff_ms, attempt);
    return 1 + (int64_t)(ap_clock_random(clock) % (uint64_t)cap);
}

ap_err_t ap_bus_execute(ap_bus_t *bus, const ap_msg_t *cmd, char *why, size_t whylen)
{
    ap_uow_t *uow = bus->deps->uow;
    ap_err_t err = AP_ERR_INTERNAL;
    /* A lost connection also loses a caller's open transaction: only the caller can retry
     * that. Without one, the next begin reconnects, so it is worth retrying here. */
    bool owns_transaction = uow->depth == 0;

    for (unsigned attempt = 1; attempt <= bus->retry.max_attempts; attempt++) {
        err = ap_uow_begin(uow);
        if (err == AP_OK) {
            err = ap_bus_handle(bus, cmd, why, whylen);
            if (err == AP_OK)
                err = ap_uow_commit(uow);
            else
                ap_uow_rollback(uow);
        }
        /* A doomed transaction fails every command in it: only its owner can retry. */
        bool retry = (err == AP_ERR_CONFLICT && !uow->doomed) ||
                     (err == AP_ERR_UNAVAILABLE && owns_transaction);
        if (!retry || attempt == bus->retry.max_attempts)
            break;
        bus->stats.retries++;
        AP_DEBUG("bus", "%s: %s, retrying (attempt %u)", ap_msg_type_name(cmd->type),
                 ap_strerror(err), attempt + 1);
        ap_clock_sleep_ms(bus->deps->clock, backoff_ms(&bus->retry, bus->deps->clock, attempt));
    }

    if (err == AP_OK)
        bus->stats.commands_ok++;
    else if (ap_err_is_rejection(err))
        bus->stats.commands_rejected++;
    else
        bus->stats.commands_failed++;
    return err;
}
