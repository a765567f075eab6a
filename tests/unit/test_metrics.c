/*
 * test_metrics.c - the Prometheus registry (metrics.h): the text it renders, label escaping,
 * histogram buckets, series removal and collectors; and the bearer-token comparison and the
 * HTTP_ADDR parsing the HTTP API relies on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "ap/http.h"
#include "ap/metrics.h"

static char *render(ap_metrics_t *metrics)
{
    char *text = NULL;
    size_t len = 0;
    assert_true(ap_metrics_render(metrics, &text, &len));
    assert_int_equal(strlen(text), len);
    return text;
}

static void test_counter_and_gauge(void **state)
{
    (void)state;
    ap_metrics_t *m = ap_metrics_new();
    ap_metric_t *c = ap_metrics_counter(m, "x_commands_total", "Commands.", "type,outcome");
    ap_metric_t *g = ap_metrics_gauge(m, "x_up", "Up.", NULL);
    ap_metric_add(c, 1, "Allocate", "applied");
    ap_metric_add(c, 2, "Allocate", "applied");
    ap_metric_add(c, 1, "CreateBatch", "rejected");
    ap_metric_set(g, 1);
    assert_true(ap_metric_value(c, "Allocate", "applied") == 3);
    char *text = render(m);
    assert_string_equal(text, "# HELP x_commands_total Commands.\n"
                              "# TYPE x_commands_total counter\n"
                              "x_commands_total{type=\"Allocate\",outcome=\"applied\"} 3\n"
                              "x_commands_total{type=\"CreateBatch\",outcome=\"rejected\"} 1\n"
                              "# HELP x_up Up.\n"
                              "# TYPE x_up gauge\n"
                              "x_up 1\n");
    free(text);
    ap_metrics_free(m);
}

static void test_histogram(void **state)
{
    (void)state;
    static const double bounds[] = {0.5, 1, 2.5};
    ap_metrics_t *m = ap_metrics_new();
    ap_metric_t *h = ap_metrics_histogram(m, "x_seconds", "Time.", NULL, bounds, 3);
    ap_metric_observe(h, 0.25);
    ap_metric_observe(h, 1);
    ap_metric_observe(h, 7);
    char *text = render(m);
    assert_string_equal(text, "# HELP x_seconds Time.\n"
                              "# TYPE x_seconds histogram\n"
                              "x_seconds_bucket{le=\"0.5\"} 1\n"
                              "x_seconds_bucket{le=\"1\"} 2\n"
                              "x_seconds_bucket{le=\"2.5\"} 2\n"
                              "x_seconds_bucket{le=\"+Inf\"} 3\n"
                              "x_seconds_sum 8.25\n"
                              "x_seconds_count 3\n");
    free(text);
    ap_metrics_free(m);
}

/* The seconds since a wall-clock time: a time in the future counts as 0. */
static void test_observe_since(void **state)
{
    (void)state;
    static const double bounds[] = {0.5, 1, 10};
    ap_metrics_t *m = ap_metrics_new();
    ap_metric_t *h = ap_metrics_histogram(m, "x_age_seconds", "Age.", NULL, bounds, 3);
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    ap_metric_observe_since(h, now_ms + 60000); /* a producer's clock a minute ahead */
    ap_metric_observe_since(h, now_ms - 5000);  /* 5-6 s ago */
    char *text = render(m);
    assert_non_null(strstr(text, "x_age_seconds_bucket{le=\"0.5\"} 1\n"
                                 "x_age_seconds_bucket{le=\"1\"} 1\n"
                                 "x_age_seconds_bucket{le=\"10\"} 2\n"));
    assert_non_null(strstr(text, "x_age_seconds_count 2\n"));
    free(text);
    ap_metrics_free(m);
}

static void test_escaping_and_removal(void **state)
{
    (void)state;
    ap_metrics_t *m = ap_metrics_new();
    ap_metric_t *g = ap_metrics_gauge(m, "x_lag", "Lag\\of a \"partition\"\nper topic.",
                                      "topic,partition");
    ap_metric_set(g, 5, "a\"b\\c\nd", "0");
    ap_metric_set(g, 7, "t", "1");
    ap_metric_remove(g, "t", "1");
    ap_metric_set(g, 9, "t", "2");
    char *text = render(m);
    assert_string_equal(text, "# HELP x_lag Lag\\\\of a \"partition\"\\nper topic.\n"
                              "# TYPE x_lag gauge\n"
                              "x_lag{topic=\"a\\\"b\\\\c\\nd\",partition=\"0\"} 5\n"
                              "x_lag{topic=\"t\",partition=\"2\"} 9\n");
    free(text);
    ap_metrics_free(m);
}

static void collect(void *ctx)
{
    ap_metric_set(ctx, 42);
}

static void test_collector_runs_at_render(void **state)
{
    (void)state;
    ap_metrics_t *m = ap_metrics_new();
    ap_metric_t *g = ap_metrics_gauge(m, "x_bytes", "Bytes.", NULL);
    ap_metrics_on_collect(m, collect, g);
    char *text = render(m);
    assert_non_null(strstr(text, "\nx_bytes 42\n"));
    free(text);
    ap_metric_add(NULL, 1); /* a NULL family is a no-op */
    ap_metrics_free(m);
}

static void test_addr_split(void **state)
{
    (void)state;
    char host[64], port[8];
    assert_true(ap_http_addr_split("127.0.0.1:8080", host, sizeof host, port, sizeof port));
    assert_string_equal(host, "127.0.0.1");
    assert_string_equal(port, "8080");
    assert_true(ap_http_addr_split("[::1]:0", host, sizeof host, port, sizeof port));
    assert_string_equal(host, "::1");
    assert_true(ap_http_addr_split("0.0.0.0:80", host, sizeof host, port, sizeof port));
    assert_false(ap_http_addr_split("8080", host, sizeof host, port, sizeof port));
    assert_false(ap_http_addr_split(":8080", host, sizeof host, port, sizeof port));
    assert_false(ap_http_addr_split("host:", host, sizeof host, port, sizeof port));
    assert_false(ap_http_addr_split("host:99999", host, sizeof host, port, sizeof port));
    assert_false(ap_http_addr_split("host:80x", host, sizeof host, port, sizeof port));
    assert_false(ap_http_addr_split("::1:80", host, sizeof host, port, sizeof port));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_observe_since),
        cmocka_unit_test(test_escaping_and_removal),
        cmocka_unit_test(test_collector_runs_at_render),
        cmocka_unit_test(test_addr_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
