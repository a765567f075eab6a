/*
 * fake_adapters.c - a publisher and a notifier that remember, and a clock that only moves
 * when someone sleeps.
 */
#include <stdlib.h>
#include <string.h>

#include "fakes.h"

/* ---------------------------------------------------------------- publisher */

typedef struct fake_publisher {
    ap_publisher_t pub;
    ap_msg_t *events;
    size_t nevents;
} fake_publisher_t;

static ap_err_t fake_publish(ap_publisher_t *pub, const ap_msg_t *event)
{
    fake_publisher_t *self = container_of(pub, fake_publisher_t, pub);
    ap_msg_t *grown = realloc(self->events, (self->nevents + 1) * sizeof *grown);
    if (!grown)
        return AP_ERR_NOMEM;
    self->events = grown;
    self->events[self->nevents++] = *event;
    return AP_OK;
}

static void fake_publisher_free(ap_publisher_t *pub)
{
    fake_publisher_t *self = container_of(pub, fake_publisher_t, pub);
    free(self->events);
    free(self);
}

static const struct ap_publisher_ops fake_publisher_ops = {fake_publish, fake_publisher_free};

ap_publisher_t *ap_fake_publisher_new(void)
{
    fake_publisher_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->pub.ops = &fake_publisher_ops;
    return &self->pub;
}

size_t ap_fake_publisher_count(ap_publisher_t *pub)
{
    return container_of(pub, fake_publisher_t, pub)->nevents;
}

const ap_msg_t *ap_fake_publisher_event(ap_publisher_t *pub, size_t i)
{
    fake_publisher_t *self = container_of(pub, fake_publisher_t, pub);
    return i < self->nevents ? &self->events[i] : NULL;
}

/* ---------------------------------------------------------------- flaky publisher */

typedef struct flaky_publisher {
    ap_publisher_t pub;
    ap_publisher_t *inner;
    ap_msg_type_t type;
    unsigned seen, from, count;
    ap_err_t err;
} flaky_publisher_t;

static ap_err_t flaky_publish(ap_publisher_t *pub, const ap_msg_t *event)
{
    flaky_publisher_t *self = container_of(pub, flaky_publisher_t, pub);
    if (event->type == self->type && ++self->seen >= self->from && self->count > 0) {
        self->count--;
        return self->err;
    }
    return ap_publisher_publish(self->inner, event);
}

static void flaky_free(ap_publisher_t *pub)
{
    flaky_publisher_t *self = container_of(pub, flaky_publisher_t, pub);
    ap_publisher_free(self->inner);
    free(self);
}

static const struct ap_publisher_ops flaky_ops = {flaky_publish, flaky_free};

ap_publisher_t *ap_fake_flaky_publisher_new(ap_msg_type_t type, unsigned from, unsigned count,
                                            ap_err_t err)
{
    flaky_publisher_t *self = calloc(1, sizeof *self);
    if (!self || !(self->inner = ap_fake_publisher_new())) {
        free(self);
        return NULL;
    }
    self->pub.ops = &flaky_ops;
    self->type = type;
    self->from = from;
    self->count = count;
    self->err = err;
    return &self->pub;
}

ap_publisher_t *ap_fake_flaky_publisher_inner(ap_publisher_t *pub)
{
    return container_of(pub, flaky_publisher_t, pub)->inner;
}

/* ---------------------------------------------------------------- notifier */

typedef struct sent {
    char *to, *body;
} sent_t;

typedef struct fake_notifier {
    ap_notifier_t notifier;
    sent_t *sent;
    size_t nsent;
} fake_notifier_t;

static ap_err_t fake_send(ap_notifier_t *notifier, const char *to, const char *subject,
                          const char *body, const char *event_id)
{
    fake_notifier_t *self = container_of(notifier, fake_notifier_t, notifier);
    (void)subject, (void)event_id;
    sent_t *grown = realloc(self->sent, (self->nsent + 1) * sizeof *grown);
    if (!grown)
        return AP_ERR_NOMEM;
    self->sent = grown;
    sent_t *s = &self->sent[self->nsent];
    s->to = strdup(to);
    s->body = strdup(body);
    if (!s->to || !s->body) {
        free(s->to);
        free(s->body);
        return AP_ERR_NOMEM;
    }
    self->nsent++;
    return AP_OK;
}

static void fake_notifier_free(ap_notifier_t *notifier)
{
    fake_notifier_t *self = container_of(notifier, fake_notifier_t, notifier);
    for (size_t i = 0; i < self->nsent; i++) {
        free(self->sent[i].to);
        free(self->sent[i].body);
    }
    free(self->sent);
    free(self);
}

static const struct ap_notifier_ops fake_notifier_ops = {fake_send, fake_notifier_free};

ap_notifier_t *ap_fake_notifier_new(void)
{
    fake_notifier_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->notifier.ops = &fake_notifier_ops;
    return &self->notifier;
}

size_t ap_fake_notifier_count(ap_notifier_t *notifier)
{
    return container_of(notifier, fake_notifier_t, notifier)->nsent;
}

const char *ap_fake_notifier_to(ap_notifier_t *notifier, size_t i)
{
    return container_of(notifier, fake_notifier_t, notifier)->sent[i].to;
}

const char *ap_fake_notifier_body(ap_notifier_t *notifier, size_t i)
{
    return container_of(notifier, fake_notifier_t, notifier)->sent[i].body;
}

/* ---------------------------------------------------------------- clock */

typedef struct fake_clock {
    ap_clock_t clock;
    int64_t now_ms, slept_ms;
    uint32_t state;
} fake_clock_t;

static int64_t fake_now_ms(ap_clock_t *clock)
{
    return container_of(clock, fake_clock_t, clock)->now_ms;
}

static void fake_sleep_ms(ap_clock_t *clock, int64_t ms)
{
    fake_clock_t *self = container_of(clock, fake_clock_t, clock);
    self->now_ms += ms;
    self->slept_ms += ms;
}

/* xorshift32: deterministic, good enough for jitter. */
static uint32_t fake_random(ap_clock_t *clock)
{
    fake_clock_t *self = container_of(clock, fake_clock_t, clock);
    uint32_t x = self->state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return self->state = x;
}

static void fake_clock_free(ap_clock_t *clock)
{
    free(container_of(clock, fake_clock_t, clock));
}

static const struct ap_clock_ops fake_clock_ops = {fake_now_ms, fake_sleep_ms, fake_random,
                                                   fake_clock_free};

ap_clock_t *ap_fake_clock_new(void)
{
    fake_clock_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->clock.ops = &fake_clock_ops;
    self->state = 2463534242u;
    return &self->clock;
}

int64_t ap_fake_clock_slept_ms(ap_clock_t *clock)
{
    return container_of(clock, fake_clock_t, clock)->slept_ms;
}
