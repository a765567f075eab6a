/*
 * test_registry.c - the schema-registry client (registry_client.c) over real HTTP against the
 * fake registry (tests/fakes/fake_registry.c), for what only a test double shows: the
 * requests made (headers; caching, proved with the fake's request counter), refusals and
 * failures on demand mapped to ap_err_t, dead and hanging registries, and credentials that
 * reach the server but never the log. Against a real registry: test_registry_apicurio.c.
 *
 * Every test starts its own fake server on an ephemeral port and its own client, so tests
 * share nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ap/log.h"
#include "ap/registry.h"
#include "fake_registry.h"

#define CONTENT_TYPE "application/vnd.schemaregistry.v1+json"

static const char schema_a[] =
    "{\"type\":\"record\",\"name\":\"Allocated\",\"fields\":[{\"name\":\"orderid\","
    "\"type\":\"string\"},{\"name\":\"qty\",\"type\":\"long\"}]}";
static const char schema_b[] =
    "{\"type\":\"record\",\"name\":\"Deallocated\",\"fields\":[{\"name\":\"orderid\","
    "\"type\":\"string\"}]}";

static ap_log_level_t quiet_level = AP_LOG_WARN;

/* ---------------------------------------------------------------- fixtures and helpers */

struct fixture {
    fake_registry_t *fake;
    ap_registry_t *registry;
    int saved_stderr; /* -1 unless stderr is being captured */
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    fx->saved_stderr = -1;
    fx->fake = fake_registry_start();
    assert_non_null(fx->fake);
    assert_int_equal(ap_registry_new(fake_registry_url(fx->fake), &fx->registry), AP_OK);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    if (fx->saved_stderr >= 0) {
        dup2(fx->saved_stderr, STDERR_FILENO);
        close(fx->saved_stderr);
    }
    ap_log_setup(quiet_level, false);
    ap_registry_free(fx->registry);
    fake_registry_stop(fx->fake);
    free(fx);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A loopback socket bound to an ephemeral port; listening when `listening`. Returns the fd. */
static int loopback_socket(bool listening, unsigned *port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    if (listening)
        assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

/* Sends stderr (where ap_log writes) to a temporary file until stop_capture. */
static FILE *start_capture(struct fixture *fx)
{
    FILE *file = tmpfile();
    assert_non_null(file);
    fflush(stderr);
    fx->saved_stderr = dup(STDERR_FILENO);
    assert_true(fx->saved_stderr >= 0);
    assert_true(dup2(fileno(file), STDERR_FILENO) >= 0);
    return file;
}

/* Restores stderr and returns what was written meanwhile (caller frees). */
static char *stop_capture(struct fixture *fx, FILE *file)
{
    fflush(stderr);
    dup2(fx->saved_stderr, STDERR_FILENO);
    close(fx->saved_stderr);
    fx->saved_stderr = -1;

    struct stat st;
    assert_int_equal(fstat(fileno(file), &st), 0);
    char *text = calloc(1, (size_t)st.st_size + 1);
    assert_non_null(text);
    assert_int_equal(pread(fileno(file), text, (size_t)st.st_size, 0), st.st_size);
    fclose(file);
    return text;
}

/* ---------------------------------------------------------------- tests */

static void test_register_returns_an_id(void **state)
{
    struct fixture *fx = *state;
    char why[256] = "", header[256];
    int32_t id = -1;

    assert_int_equal(
        ap_registry_register(fx->registry, "events-value", schema_a, &id, why, sizeof why),
        AP_OK);
    assert_true(id > 0);
    assert_int_equal(fake_registry_versions(fx->fake, "events-value"), 1);
    assert_int_equal(fake_registry_requests(fx->fake), 1);
    assert_true(fake_registry_last_header(fx->fake, "Content-Type", header, sizeof header));
    assert_string_equal(header, CONTENT_TYPE);
    assert_false(fake_registry_last_header(fx->fake, "Authorization", header, sizeof header));
}

static void test_same_schema_same_id_second_call_cached(void **state)
{
    struct fixture *fx = *state;
    int32_t first = -1, second = -1, other_subject = -1, fresh = -1;
    ap_registry_t *another = NULL;

    assert_int_equal(ap_registry_register(fx->registry, "a-value", schema_a, &first, NULL, 0),
                     AP_OK);
    unsigned requests = fake_registry_requests(fx->fake);

    /* The same subject and schema again: the cache answers, the server sees nothing. */
    assert_int_equal(ap_registry_register(fx->registry, "a-value", schema_a, &second, NULL, 0),
                     AP_OK);
    assert_int_equal(second, first);
    assert_int_equal(fake_registry_requests(fx->fake), requests);

    /* The same schema under another subject: a request, and the same id. */
    assert_int_equal(
        ap_registry_register(fx->registry, "b-value", schema_a, &other_subject, NULL, 0),
        AP_OK);
    assert_int_equal(other_subject, first);
    assert_int_equal(fake_registry_requests(fx->fake), requests + 1);
    assert_int_equal(fake_registry_versions(fx->fake, "b-value"), 1);

    /* A new client has its own (empty) cache and gets the same id from the server. */
    assert_int_equal(ap_registry_new(fake_registry_url(fx->fake), &another), AP_OK);
    assert_int_equal(ap_registry_register(another, "a-value", schema_a, &fresh, NULL, 0), AP_OK);
    assert_int_equal(fresh, first);
    assert_int_equal(fake_registry_requests(fx->fake), requests + 2);
    assert_int_equal(fake_registry_versions(fx->fake, "a-value"), 1);
    ap_registry_free(another);
}

static void test_schema_by_id_round_trip_and_cache(void **state)
{
    struct fixture *fx = *state;
    int32_t id = -1;
    char *first = NULL, *second = NULL;

    assert_int_equal(ap_registry_register(fx->registry, "d-value", schema_b, &id, NULL, 0), AP_OK);
    unsigned requests = fake_registry_requests(fx->fake);

    assert_int_equal(ap_registry_schema_by_id(fx->registry, id, &first), AP_OK);
    assert_string_equal(first, schema_b);
    assert_int_equal(fake_registry_requests(fx->fake), requests + 1);

    assert_int_equal(ap_registry_schema_by_id(fx->registry, id, &second), AP_OK);
    assert_string_equal(second, schema_b);
    assert_ptr_not_equal(first, second); /* each answer is the caller's own copy */
    assert_int_equal(fake_registry_requests(fx->fake), requests + 1);
    free(first);
    free(second);
}

static void test_unknown_id_is_not_found(void **state)
{
    struct fixture *fx = *state;
    char sentinel[] = "untouched", *schema = sentinel;

    assert_int_equal(ap_registry_schema_by_id(fx->registry, 4242, &schema), AP_ERR_NOT_FOUND);
    assert_ptr_equal(schema, sentinel);
    assert_int_equal(fake_registry_requests(fx->fake), 1);

    /* A miss is not cached: the schema may be registered later. */
    assert_int_equal(ap_registry_schema_by_id(fx->registry, 4242, &schema), AP_ERR_NOT_FOUND);
    assert_int_equal(fake_registry_requests(fx->fake), 2);

    /* Ids are never negative: no need to ask. */
    assert_int_equal(ap_registry_schema_by_id(fx->registry, -1, &schema), AP_ERR_NOT_FOUND);
    assert_int_equal(fake_registry_requests(fx->fake), 2);
    assert_ptr_equal(schema, sentinel);
}

static void test_refusals_are_config_errors_with_the_message(void **state)
{
    struct fixture *fx = *state;
    char why[512];
    int32_t id = -7;

    fake_registry_fail_next(fx->fake, 409);
    why[0] = '\0';
    assert_int_equal(
        ap_registry_register(fx->registry, "e-value", schema_a, &id, why, sizeof why),
        AP_ERR_CONFIG);
    assert_non_null(strstr(why, "incompatible with an earlier schema"));
    assert_non_null(strstr(why, "409"));
    assert_int_equal(id, -7);

    fake_registry_fail_next(fx->fake, 422);
    why[0] = '\0';
    assert_int_equal(
        ap_registry_register(fx->registry, "e-value", schema_a, &id, why, sizeof why),
        AP_ERR_CONFIG);
    assert_non_null(strstr(why, "Invalid schema"));
    assert_int_equal(id, -7);

    /* A refusal is not cached: once the registry agrees, the same call succeeds. */
    assert_int_equal(ap_registry_register(fx->registry, "e-value", schema_a, &id, NULL, 0),
                     AP_OK);
    assert_true(id > 0);

    /* The fake's own 422 for a schema that is not JSON, and a small `why` truncated safely. */
    char small[8];
    assert_int_equal(ap_registry_register(fx->registry, "e-value", "{not json", &id, small,
                                          sizeof small),
                     AP_ERR_CONFIG);
    assert_int_equal(strlen(small), sizeof small - 1);

    /* Other 4xx are refusals too. */
    fake_registry_fail_next(fx->fake, 403);
    why[0] = '\0';
    assert_int_equal(
        ap_registry_register(fx->registry, "e-value", schema_b, &id, why, sizeof why),
        AP_ERR_CONFIG);
    assert_non_null(strstr(why, "refused by the fake registry"));
}

static void test_server_failures_are_unavailable(void **state)
{
    struct fixture *fx = *state;
    char why[512], *schema = NULL;
    int32_t id = -7;

    fake_registry_fail_next(fx->fake, 500);
    why[0] = '\0';
    assert_int_equal(
        ap_registry_register(fx->registry, "f-value", schema_a, &id, why, sizeof why),
        AP_ERR_UNAVAILABLE);
    assert_non_null(strstr(why, "backend data store"));
    assert_int_equal(id, -7);

    /* A timeout or a rate limit means "later", not "no". */
    const long later[] = {408, 429};
    for (size_t i = 0; i < 2; i++) {
        fake_registry_fail_next(fx->fake, (int)later[i]);
        assert_int_equal(
            ap_registry_register(fx->registry, "f-value", schema_a, &id, why, sizeof why),
            AP_ERR_UNAVAILABLE);
        assert_int_equal(id, -7);
    }

    /* A 2xx whose body is not the expected JSON is a broken registry, not a refusal. */
    fake_registry_fail_next(fx->fake, 200);
    assert_int_equal(ap_registry_register(fx->registry, "f-value", schema_a, &id, NULL, 0),
                     AP_ERR_UNAVAILABLE);
    assert_int_equal(id, -7);

    assert_int_equal(ap_registry_register(fx->registry, "f-value", schema_a, &id, NULL, 0),
                     AP_OK);

    fake_registry_fail_next(fx->fake, 503);
    assert_int_equal(ap_registry_schema_by_id(fx->registry, id, &schema), AP_ERR_UNAVAILABLE);
    fake_registry_fail_next(fx->fake, 200);
    assert_int_equal(ap_registry_schema_by_id(fx->registry, id, &schema), AP_ERR_UNAVAILABLE);
    assert_null(schema);

    /* And it recovers on the same handle. */
    assert_int_equal(ap_registry_schema_by_id(fx->registry, id, &schema), AP_OK);
    assert_string_equal(schema, schema_a);
    free(schema);
}

static void test_nobody_listening_is_unavailable_quickly(void **state)
{
    struct fixture *fx = *state;
    ap_registry_t *dead = NULL;
    char url[64], why[512] = "", *schema = NULL;
    unsigned port;
    int32_t id = -7;

    /* A port that was just ours and is now closed: connections are refused at once. */
    close(loopback_socket(false, &port));
    snprintf(url, sizeof url, "http://127.0.0.1:%u", port);
    assert_int_equal(ap_registry_new(url, &dead), AP_OK);

    double start = now_s();
    assert_int_equal(ap_registry_register(dead, "g-value", schema_a, &id, why, sizeof why),
                     AP_ERR_UNAVAILABLE);
    assert_int_equal(ap_registry_schema_by_id(dead, 1, &schema), AP_ERR_UNAVAILABLE);
    assert_true(now_s() - start < 2.0);
    assert_int_equal(id, -7);
    assert_null(schema);
    ap_registry_free(dead);
    (void)fx;
}

static void test_hanging_registry_times_out(void **state)
{
    struct fixture *fx = *state;
    ap_registry_t *hung = NULL;
    char url[64];
    unsigned port;
    int32_t id = -7;

    /* Listening but never accepting: the kernel completes the handshake, nobody answers. */
    int fd = loopback_socket(true, &port);
    snprintf(url, sizeof url, "http://127.0.0.1:%u", port);
    assert_int_equal(ap_registry_new(url, &hung), AP_OK);

    double start = now_s();
    assert_int_equal(ap_registry_register(hung, "h-value", schema_a, &id, NULL, 0),
                     AP_ERR_UNAVAILABLE);
    double took = now_s() - start;
    assert_true(took >= 9.0);
    assert_true(took < 15.0);
    ap_registry_free(hung);
    close(fd);
    (void)fx;
}

static void test_credentials_are_sent_but_never_logged(void **state)
{
    struct fixture *fx = *state;
    ap_registry_t *secured = NULL, *dead = NULL;
    char url[128], dead_url[128], header[256], *schema = NULL, *logged;
    unsigned port;
    int32_t id = -1;

    ap_log_setup(AP_LOG_DEBUG, false);
    FILE *file = start_capture(fx);

    snprintf(url, sizeof url, "http://alice:s3cr%%40t@127.0.0.1:%u/",
             fake_registry_port(fx->fake));
    assert_int_equal(ap_registry_new(url, &secured), AP_OK);
    assert_int_equal(ap_registry_register(secured, "i-value", schema_a, &id, NULL, 0), AP_OK);
    assert_true(fake_registry_last_header(fx->fake, "Authorization", header, sizeof header));
    fake_registry_fail_next(fx->fake, 500);
    assert_int_equal(ap_registry_schema_by_id(secured, id, &schema), AP_ERR_UNAVAILABLE);
    assert_int_equal(ap_registry_schema_by_id(secured, id, &schema), AP_OK);
    free(schema);
    ap_registry_free(secured);

    close(loopback_socket(false, &port));
    snprintf(dead_url, sizeof dead_url, "http://alice:s3cr%%40t@127.0.0.1:%u", port);
    assert_int_equal(ap_registry_new(dead_url, &dead), AP_OK);
    assert_int_equal(ap_registry_register(dead, "i-value", schema_a, &id, NULL, 0),
                     AP_ERR_UNAVAILABLE);
    ap_registry_free(dead);
    assert_int_equal(ap_registry_new("ftp://alice:s3cr%40t@127.0.0.1/", &dead), AP_ERR_CONFIG);

    logged = stop_capture(fx, file);
    ap_log_setup(quiet_level, false);

    /* Basic auth for alice:s3cr@t (the URL's %40 decoded). */
    assert_string_equal(header, "Basic YWxpY2U6czNjckB0");
    /* The log names the registry, without the user or the password. */
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%u", fake_registry_port(fx->fake));
    assert_non_null(strstr(logged, base));
    assert_non_null(strstr(logged, "GET ")); /* the debug records were on */
    assert_null(strstr(logged, "s3cr"));
    assert_null(strstr(logged, "alice"));
    assert_null(strstr(logged, "YWxpY2U6"));
    free(logged);
}

static void test_bad_urls_are_config_errors(void **state)
{
    static char sentinel;
    ap_registry_t *const marker = (ap_registry_t *)&sentinel; /* must stay untouched */
    ap_registry_t *out = marker;
    (void)state;

    assert_int_equal(ap_registry_new("not a url", &out), AP_ERR_CONFIG);
    assert_int_equal(ap_registry_new("ftp://127.0.0.1:21", &out), AP_ERR_CONFIG);
    assert_int_equal(ap_registry_new("", &out), AP_ERR_CONFIG);
    assert_ptr_equal(out, marker);
    ap_registry_free(NULL);
}

/* ---------------------------------------------------------------- main */

int main(void)
{
    if (getenv("LOG_LEVEL") && strcmp(getenv("LOG_LEVEL"), "debug") == 0)
        quiet_level = AP_LOG_DEBUG;
    ap_log_setup(quiet_level, false);

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_register_returns_an_id),
        T(test_same_schema_same_id_second_call_cached),
        T(test_schema_by_id_round_trip_and_cache),
        T(test_unknown_id_is_not_found),
        T(test_refusals_are_config_errors_with_the_message),
        T(test_server_failures_are_unavailable),
        T(test_nobody_listening_is_unavailable_quickly),
        T(test_hanging_registry_times_out),
        T(test_credentials_are_sent_but_never_logged),
        cmocka_unit_test(test_bad_urls_are_config_errors),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
