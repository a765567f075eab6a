/*
 * log_adapters.c - adapters with no infrastructure behind them: a notifier that only logs
 * (production uses it until the email adapter exists) and the system clock. Declared in
 * ap/log_adapters.h; the composition root picks them.
 */
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "ap/log.h"
#include "ap/log_adapters.h"

static ap_err_t log_send(ap_notifier_t *notifier, const char *to, const char *subject,
                         const char *body, const char *event_id)
{
    (void)notifier;
    AP_INFO("notify", "to=%s subject=\"%s\" body=\"%s\" event-id=%s", to, subject, body,
            event_id);
    return AP_OK;
}

static void log_notifier_free(ap_notifier_t *notifier)
{
    free(notifier);
}

static const struct ap_notifier_ops log_notifier_ops = {log_send, log_notifier_free};

ap_notifier_t *ap_log_notifier_new(void)
{
    ap_notifier_t *notifier = calloc(1, sizeof *notifier);
    if (notifier)
        notifier->ops = &log_notifier_ops;
    return notifier;
}

struct system_clock {
    ap_clock_t clock;
    unsigned int seed;
};

static int64_t system_now_ms(ap_clock_t *clock)
{
    struct timespec ts;
    (void)clock;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void system_sleep_ms(ap_clock_t *clock, int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    (void)clock;
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* The kernel's generator: event ids are made of these draws, and rand_r's 32 bits of state
 * would repeat ids between processes long before a day's events. It falls back on rand_r
 * only if getrandom fails, which it does not on Linux once booted. */
static uint32_t system_random(ap_clock_t *clock)
{
    struct system_clock *self = container_of(clock, struct system_clock, clock);
    uint32_t r;
    if (getrandom(&r, sizeof r, 0) == (ssize_t)sizeof r)
        return r;
    return (uint32_t)rand_r(&self->seed);
}

static void system_clock_free(ap_clock_t *clock)
{
    free(clock ? container_of(clock, struct system_clock, clock) : NULL);
}

static const struct ap_clock_ops system_clock_ops = {system_now_ms, system_sleep_ms,
                                                     system_random, system_clock_free};

ap_clock_t *ap_system_clock_new(void)
{
    struct system_clock *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    self->clock.ops = &system_clock_ops;
    self->seed = (unsigned int)(ts.tv_nsec ^ ts.tv_sec);
    return &self->clock;
}
