/*
 * consumer.h - the `run` loop: Kafka records in, one Postgres transaction per command out.
 */
#ifndef AP_ENTRYPOINTS_CONSUMER_H
#define AP_ENTRYPOINTS_CONSUMER_H

#include <signal.h>

#include "ap/bootstrap.h"
#include "ap/config.h"

/*
 * Consumes the command topics until *stop becomes non-zero, then finishes the record in
 * hand, leaves the group and returns 0; returns 1 when the consumer cannot start.
 */
int ap_consumer_run(const ap_config_t *cfg, ap_app_t *app, volatile sig_atomic_t *stop);

#endif
