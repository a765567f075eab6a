/*
 * log_adapters.c - the system clock, an adapter with no infrastructure behind it: monotonic
 * time, sleeps, and random numbers from the kernel. Declared in ap/log_adapters.h; the
 * composition root picks it. (The notifier that only logged went when the email outbox
 * took its place.)
 */
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "ap/log_adapters.h"

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
 * would repeat ids between processes long before a day's events. Drawn 256 bytes at a time
 * into a pool of the calling thread's (an event id takes four draws: one system call each
 * was 7% of the processor's time under load). It falls back on rand_r only if getrandom
 * fails, which it does not on Linux once booted. */
static uint32_t system_random(ap_clock_t *clock)
{
    static _Thread_local uint32_t pool[64];
    static _Thread_local size_t left;
    struct system_clock *self = container_of(clock, struct system_clock, clock);

    if (left == 0 && getrandom(pool, sizeof pool, 0) == (ssize_t)sizeof pool)
        left = sizeof pool / sizeof *pool;
    if (left == 0)
        return (uint32_t)rand_r(&self->seed);
    return pool[--left];
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
