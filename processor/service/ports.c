/*
 * ports.c - the thin dispatchers of the publisher, notifier, clock and views ports.
 */
#include <stddef.h>

#include "ap/ports.h"

ap_err_t ap_publisher_publish(ap_publisher_t *pub, const ap_msg_t *event)
{
    return pub->ops->publish(pub, event);
}

void ap_publisher_free(ap_publisher_t *pub)
{
    if (pub)
        pub->ops->free(pub);
}

ap_err_t ap_notifier_send(ap_notifier_t *notifier, const char *to, const char *subject,
                          const char *body, const char *event_id)
{
    return notifier->ops->send(notifier, to, subject, body, event_id);
}

void ap_notifier_free(ap_notifier_t *notifier)
{
    if (notifier)
        notifier->ops->free(notifier);
}

int64_t ap_clock_now_ms(ap_clock_t *clock)
{
    return clock->ops->now_ms(clock);
}

void ap_clock_sleep_ms(ap_clock_t *clock, int64_t ms)
{
    clock->ops->sleep_ms(clock, ms);
}

uint32_t ap_clock_random(ap_clock_t *clock)
{
    return clock->ops->random(clock);
}

void ap_clock_free(ap_clock_t *clock)
{
    if (clock)
        clock->ops->free(clock);
}

ap_err_t ap_views_allocations(ap_views_t *views, const char *orderid, ap_allocation_row_t **rows,
                              size_t *nrows)
{
    return views->ops->allocations(views, orderid, rows, nrows);
}

void ap_views_free(ap_views_t *views)
{
    if (views)
        views->ops->free(views);
}
