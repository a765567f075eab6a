/*
 * metrics.c - the Prometheus registry of metrics.h and its text exposition format.
 *
 * One mutex guards the whole registry: updates are a few arithmetic operations, scrapes
 * come every few seconds, so contention is not worth finer locks. A series is found by a
 * linear scan of its family's series (families here have tens of series at most); its key
 * is its label values joined by 0x1f, which no label value we use contains.
 */
#include "ap/metrics.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ap/strbuf.h"

#define MAX_LABELS 4
#define MAX_COLLECTORS 8

typedef enum { COUNTER, GAUGE, HISTOGRAM } kind_t;

typedef struct series {
    char *key;                /* label values joined by 0x1f */
    char *values[MAX_LABELS]; /* pointers into a copy of key, split */
    char *split;
    double value;             /* counter, gauge; a histogram's sum */
    double count;             /* histogram */
    double *buckets;          /* histogram: per-bucket counts (not cumulative) */
    struct series *next;
} series_t;

struct ap_metric {
    ap_metrics_t *owner;
    kind_t kind;
    char *name, *help;
    char *labels[MAX_LABELS];
    char *label_text;
    size_t nlabels;
    double *bounds;
    size_t nbounds;
    series_t *series, **tail; /* in creation order */
    struct ap_metric *next;
};

struct ap_metrics {
    pthread_mutex_t mutex;
    ap_metric_t *families, **tail;
    struct {
        ap_metrics_collect_fn fn;
        void *ctx;
    } collectors[MAX_COLLECTORS];
    size_t ncollectors;
};

ap_metrics_t *ap_metrics_new(void)
{
    ap_metrics_t *metrics = calloc(1, sizeof *metrics);
    if (!metrics)
        return NULL;
    pthread_mutex_init(&metrics->mutex, NULL);
    metrics->tail = &metrics->families;
    return metrics;
}

static void series_free(series_t *s)
{
    free(s->key);
    free(s->split);
    free(s->buckets);
    free(s);
}

static void family_free(ap_metric_t *m)
{
    for (series_t *s = m->series, *next; s; s = next) {
        next = s->next;
        series_free(s);
    }
    free(m->name);
    free(m->help);
    free(m->label_text);
    free(m->bounds);
    free(m);
}

void ap_metrics_free(ap_metrics_t *metrics)
{
    if (!metrics)
        return;
    for (ap_metric_t *m = metrics->families, *next; m; m = next) {
        next = m->next;
        family_free(m);
    }
    pthread_mutex_destroy(&metrics->mutex);
    free(metrics);
}

static ap_metric_t *add_family(ap_metrics_t *metrics, kind_t kind, const char *name,
                               const char *help, const char *labels, const double *bounds,
                               size_t nbounds)
{
    ap_metric_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->owner = metrics;
    m->kind = kind;
    m->tail = &m->series;
    m->name = strdup(name);
    m->help = strdup(help);
    if (labels && *labels) {
        char *save = NULL;
        m->label_text = strdup(labels);
        for (char *tok = m->label_text ? strtok_r(m->label_text, ",", &save) : NULL; tok;
             tok = strtok_r(NULL, ",", &save)) {
            assert(m->nlabels < MAX_LABELS);
            if (m->nlabels < MAX_LABELS)
                m->labels[m->nlabels++] = tok;
        }
    }
    if (nbounds) {
        m->bounds = malloc(nbounds * sizeof *bounds);
        if (m->bounds)
            memcpy(m->bounds, bounds, nbounds * sizeof *bounds);
        m->nbounds = nbounds;
    }
    if (!m->name || !m->help || (labels && *labels && !m->label_text) ||
        (nbounds && !m->bounds)) {
        family_free(m);
        return NULL;
    }
    pthread_mutex_lock(&metrics->mutex);
    for (ap_metric_t *other = metrics->families; other; other = other->next) {
        if (strcmp(other->name, name) == 0) {
            pthread_mutex_unlock(&metrics->mutex);
            assert(!"metric registered twice");
            family_free(m);
            return NULL;
        }
    }
    *metrics->tail = m;
    metrics->tail = &m->next;
    pthread_mutex_unlock(&metrics->mutex);
    return m;
}

ap_metric_t *ap_metrics_counter(ap_metrics_t *metrics, const char *name, const char *help,
                                const char *labels)
{
    return add_family(metrics, COUNTER, name, help, labels, NULL, 0);
}

ap_metric_t *ap_metrics_gauge(ap_metrics_t *metrics, const char *name, const char *help,
                              const char *labels)
{
    return add_family(metrics, GAUGE, name, help, labels, NULL, 0);
}

ap_metric_t *ap_metrics_histogram(ap_metrics_t *metrics, const char *name, const char *help,
                                  const char *labels, const double *buckets, size_t nbuckets)
{
    return add_family(metrics, HISTOGRAM, name, help, labels, buckets, nbuckets);
}

/* The series' key from the caller's label values. False when it does not fit. */
static bool make_key(const ap_metric_t *m, va_list ap, char *key, size_t size)
{
    size_t len = 0;
    key[0] = '\0';
    for (size_t i = 0; i < m->nlabels; i++) {
        const char *value = va_arg(ap, const char *);
        int n = snprintf(key + len, size - len, "%s%s", i ? "\x1f" : "", value ? value : "");
        if (n < 0 || (size_t)n >= size - len)
            return false;
        len += (size_t)n;
    }
    return true;
}

/* The series for `key`, created when `create`; the registry's mutex is held. */
static series_t *find_series(ap_metric_t *m, const char *key, bool create)
{
    for (series_t *s = m->series; s; s = s->next) {
        if (strcmp(s->key, key) == 0)
            return s;
    }
    if (!create)
        return NULL;
    series_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->key = strdup(key);
    s->split = strdup(key);
    if (m->kind == HISTOGRAM)
        s->buckets = calloc(m->nbounds + 1, sizeof *s->buckets);
    if (!s->key || !s->split || (m->kind == HISTOGRAM && !s->buckets)) {
        series_free(s);
        return NULL;
    }
    char *p = s->split;
    for (size_t i = 0; i < m->nlabels; i++) {
        s->values[i] = p;
        char *sep = strchr(p, '\x1f');
        if (sep) {
            *sep = '\0';
            p = sep + 1;
        } else {
            p += strlen(p);
        }
    }
    *m->tail = s;
    m->tail = &s->next;
    return s;
}

typedef enum { ADD, SET, OBSERVE } op_t;

static void update(ap_metric_t *m, op_t op, double value, va_list ap)
{
    char key[1024];
    if (!m || !make_key(m, ap, key, sizeof key))
        return;
    assert(op != OBSERVE || m->kind == HISTOGRAM);
    assert(op == OBSERVE || m->kind != HISTOGRAM);
    assert(!(op == ADD && m->kind == COUNTER && value < 0));
    pthread_mutex_lock(&m->owner->mutex);
    series_t *s = find_series(m, key, true);
    if (s) {
        if (op == ADD) {
            s->value += value;
        } else if (op == SET) {
            s->value = value;
        } else {
            size_t b = 0;
            while (b < m->nbounds && value > m->bounds[b])
                b++;
            s->buckets[b] += 1;
            s->count += 1;
            s->value += value;
        }
    }
    pthread_mutex_unlock(&m->owner->mutex);
}

void ap_metric_add(ap_metric_t *metric, double value, ...)
{
    va_list ap;
    va_start(ap, value);
    update(metric, ADD, value, ap);
    va_end(ap);
}

void ap_metric_set(ap_metric_t *metric, double value, ...)
{
    va_list ap;
    va_start(ap, value);
    update(metric, SET, value, ap);
    va_end(ap);
}

void ap_metric_observe(ap_metric_t *metric, double value, ...)
{
    va_list ap;
    va_start(ap, value);
    update(metric, OBSERVE, value, ap);
    va_end(ap);
}

void ap_metric_observe_since(ap_metric_t *metric, int64_t since_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    ap_metric_observe(metric, (double)(now > since_ms ? now - since_ms : 0) / 1e3);
}

void ap_metric_remove(ap_metric_t *metric, ...)
{
    char key[1024];
    va_list ap;
    va_start(ap, metric);
    bool ok = metric && make_key(metric, ap, key, sizeof key);
    va_end(ap);
    if (!ok)
        return;
    pthread_mutex_lock(&metric->owner->mutex);
    for (series_t **link = &metric->series; *link; link = &(*link)->next) {
        series_t *s = *link;
        if (strcmp(s->key, key) != 0)
            continue;
        *link = s->next;
        if (metric->tail == &s->next)
            metric->tail = link;
        series_free(s);
        break;
    }
    pthread_mutex_unlock(&metric->owner->mutex);
}

double ap_metric_value(ap_metric_t *metric, ...)
{
    char key[1024];
    double value = 0;
    va_list ap;
    va_start(ap, metric);
    bool ok = metric && make_key(metric, ap, key, sizeof key);
    va_end(ap);
    if (!ok)
        return 0;
    pthread_mutex_lock(&metric->owner->mutex);
    series_t *s = find_series(metric, key, false);
    if (s)
        value = metric->kind == HISTOGRAM ? s->count : s->value;
    pthread_mutex_unlock(&metric->owner->mutex);
    return value;
}

void ap_metrics_on_collect(ap_metrics_t *metrics, ap_metrics_collect_fn fn, void *ctx)
{
    pthread_mutex_lock(&metrics->mutex);
    assert(metrics->ncollectors < MAX_COLLECTORS);
    if (metrics->ncollectors < MAX_COLLECTORS) {
        metrics->collectors[metrics->ncollectors].fn = fn;
        metrics->collectors[metrics->ncollectors].ctx = ctx;
        metrics->ncollectors++;
    }
    pthread_mutex_unlock(&metrics->mutex);
}

/* ---------------------------------------------------------------- the text format */

/* HELP text escapes backslash and newline; label values also the double quote. */
static void put_escaped(ap_strbuf_t *o, const char *text, bool quote)
{
    for (const char *p = text; *p; p++) {
        if (*p == '\\')
            ap_strbuf_adds(o, "\\\\");
        else if (*p == '\n')
            ap_strbuf_adds(o, "\\n");
        else if (quote && *p == '"')
            ap_strbuf_adds(o, "\\\"");
        else
            ap_strbuf_addch(o, *p);
    }
}

/* The exposition's spelling of a number: an integer without a point, +Inf, NaN. */
static void format_number(double value, char text[64])
{
    if (isinf(value))
        snprintf(text, 64, value > 0 ? "+Inf" : "-Inf");
    else if (isnan(value))
        snprintf(text, 64, "NaN");
    else if (value == (double)(long long)value && fabs(value) < 1e15)
        snprintf(text, 64, "%lld", (long long)value);
    else
        snprintf(text, 64, "%.15g", value);
}

/* name{labels[,le="bound"]} value\n */
static void put_sample(ap_strbuf_t *o, const ap_metric_t *m, const series_t *s, const char *suffix,
                       const char *le, double value)
{
    ap_strbuf_adds(o, m->name);
    ap_strbuf_adds(o, suffix);
    if (m->nlabels || le) {
        ap_strbuf_adds(o, "{");
        for (size_t i = 0; i < m->nlabels; i++) {
            if (i)
                ap_strbuf_adds(o, ",");
            ap_strbuf_adds(o, m->labels[i]);
            ap_strbuf_adds(o, "=\"");
            put_escaped(o, s->values[i], true);
            ap_strbuf_adds(o, "\"");
        }
        if (le) {
            ap_strbuf_adds(o, m->nlabels ? ",le=\"" : "le=\"");
            ap_strbuf_adds(o, le);
            ap_strbuf_adds(o, "\"");
        }
        ap_strbuf_adds(o, "}");
    }
    char number[64];
    format_number(value, number);
    ap_strbuf_adds(o, " ");
    ap_strbuf_adds(o, number);
    ap_strbuf_adds(o, "\n");
}

static void put_family(ap_strbuf_t *o, const ap_metric_t *m)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    ap_strbuf_adds(o, "# HELP ");
    ap_strbuf_adds(o, m->name);
    ap_strbuf_adds(o, " ");
    put_escaped(o, m->help, false);
    ap_strbuf_adds(o, "\n# TYPE ");
    ap_strbuf_adds(o, m->name);
    ap_strbuf_adds(o, " ");
    ap_strbuf_adds(o, types[m->kind]);
    ap_strbuf_adds(o, "\n");
    for (const series_t *s = m->series; s; s = s->next) {
        if (m->kind != HISTOGRAM) {
            put_sample(o, m, s, "", NULL, s->value);
            continue;
        }
        double cumulative = 0;
        char le[64];
        for (size_t b = 0; b < m->nbounds; b++) {
            cumulative += s->buckets[b];
            format_number(m->bounds[b], le);
            put_sample(o, m, s, "_bucket", le, cumulative);
        }
        put_sample(o, m, s, "_bucket", "+Inf", s->count);
        put_sample(o, m, s, "_sum", NULL, s->value);
        put_sample(o, m, s, "_count", NULL, s->count);
    }
}

bool ap_metrics_render(ap_metrics_t *metrics, char **text, size_t *len)
{
    ap_strbuf_t o = AP_STRBUF_INIT;
    size_t ncollectors;

    pthread_mutex_lock(&metrics->mutex);
    ncollectors = metrics->ncollectors;
    pthread_mutex_unlock(&metrics->mutex);
    for (size_t i = 0; i < ncollectors; i++)
        metrics->collectors[i].fn(metrics->collectors[i].ctx);

    pthread_mutex_lock(&metrics->mutex);
    for (const ap_metric_t *m = metrics->families; m; m = m->next)
        put_family(&o, m);
    pthread_mutex_unlock(&metrics->mutex);
    size_t n = o.len;
    char *rendered = ap_strbuf_detach(&o);
    if (!rendered)
        return false;
    *text = rendered;
    *len = n;
    return true;
}
