/*
 * metrics.h - a small registry of Prometheus metrics and its text exposition format
 * (version 0.0.4): counters, gauges and histograms, each a family of series told apart by
 * label values. Written by hand: Debian packages no C Prometheus client.
 *
 * Every function is thread-safe: the consumer, the relay and the HTTP threads update series
 * while a scrape renders them. A family is registered once, at start-up, and lives as long
 * as the registry; a series (one combination of label values) is created on first use.
 * Names follow Prometheus's conventions: base units in the name (`_seconds`, `_bytes`),
 * `_total` on counters. This module knows nothing of HTTP or of what it measures.
 */
#ifndef AP_METRICS_H
#define AP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ap_metrics ap_metrics_t;
typedef struct ap_metric ap_metric_t; /* one family */

/* Caller frees with ap_metrics_free; NULL when out of memory. */
ap_metrics_t *ap_metrics_new(void);
void ap_metrics_free(ap_metrics_t *metrics);

/*
 * Registers a family. `labels` names its labels, comma-separated ("type,outcome"), or is
 * NULL for none (at most 4). Histogram `buckets` are upper bounds in increasing order
 * (copied; +Inf is implied). Returns the family, borrowed from the registry, or NULL when
 * out of memory or when the name is taken (a bug: asserted in debug builds).
 */
ap_metric_t *ap_metrics_counter(ap_metrics_t *metrics, const char *name, const char *help,
                                const char *labels);
ap_metric_t *ap_metrics_gauge(ap_metrics_t *metrics, const char *name, const char *help,
                              const char *labels);
ap_metric_t *ap_metrics_histogram(ap_metrics_t *metrics, const char *name, const char *help,
                                  const char *labels, const double *buckets, size_t nbuckets);

/*
 * Updating a series: pass exactly as many label values (strings) as the family has labels,
 * in order. A NULL family is a no-op, so optional instrumentation needs no test.
 *   ap_metric_add(commands, 1, "Allocate", "applied");
 * _add adds to a counter (only >= 0) or a gauge; _set sets a gauge, or a counter that mirrors
 * a count kept elsewhere (a collector's snapshot); _observe records one histogram value.
 */
void ap_metric_add(ap_metric_t *metric, double value, ...);
void ap_metric_set(ap_metric_t *metric, double value, ...);
void ap_metric_observe(ap_metric_t *metric, double value, ...);
/* Records the seconds from `since_ms` (milliseconds since the epoch, another host's clock
 * maybe) to now in a histogram without labels; a time in the future counts as 0. */
void ap_metric_observe_since(ap_metric_t *metric, int64_t since_ms);
/* Drops one series (a partition this process no longer reads). */
void ap_metric_remove(ap_metric_t *metric, ...);

/* A series' current value (a histogram's count); 0 when it does not exist. For tests. */
double ap_metric_value(ap_metric_t *metric, ...);

/*
 * Called at the start of every render, with no lock held, to set values that are measured
 * rather than counted (memory, a backlog, lag). At most 8 per registry.
 */
typedef void (*ap_metrics_collect_fn)(void *ctx);
void ap_metrics_on_collect(ap_metrics_t *metrics, ap_metrics_collect_fn fn, void *ctx);

/* Renders every family in registration order. Caller frees *text with free(); false when
 * out of memory. */
bool ap_metrics_render(ap_metrics_t *metrics, char **text, size_t *len);

/* The content type of what ap_metrics_render writes. */
#define AP_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
