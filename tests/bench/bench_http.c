/*
 * bench_http.c - requests per second and latency of POST /allocate, the book's API call,
 * against a running processor: CLIENTS threads (16 by default), each with its own
 * keep-alive connection, post allocations of distinct orders for SECONDS, one request after
 * another. Every request goes the whole way: produced to Kafka, applied by the consumer in
 * Postgres, outcome read back. Prints requests/s, status counts and latency percentiles.
 *
 * Usage: bench_http BASE_URL [SECONDS [CLIENTS]]   (e.g. http://127.0.0.1:8080 20 16)
 * The book's Flask API managed 243 requests/s on this kind of machine.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct client {
    const char *base;
    const char *sku;
    int id;
    double seconds;
    double *latencies; /* ms */
    size_t n, cap;
    long ok, other;
} client_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr, (void)userdata;
    return size * nmemb;
}

static long post(CURL *curl, const char *url, const char *body)
{
    long status = 0;
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(curl) == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static CURL *new_handle(struct curl_slist *headers)
{
    CURL *curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
    return curl;
}

static void *run_client(void *arg)
{
    client_t *c = arg;
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *curl = new_handle(headers);
    char url[512], body[512];
    snprintf(url, sizeof url, "%s/allocate", c->base);
    double end = now_s() + c->seconds;
    for (long i = 0; now_s() < end; i++) {
        snprintf(body, sizeof body, "{\"orderid\":\"%s-c%d-o%ld\",\"sku\":\"%s\",\"qty\":1}",
                 c->sku, c->id, i, c->sku);
        double t0 = now_s();
        long status = post(curl, url, body);
        double ms = (now_s() - t0) * 1e3;
        if (status == 202)
            c->ok++;
        else
            c->other++;
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 4096;
            c->latencies = realloc(c->latencies, c->cap * sizeof *c->latencies);
        }
        c->latencies[c->n++] = ms;
    }
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_http BASE_URL [SECONDS [CLIENTS]]\n");
        return 2;
    }
    const char *base = argv[1];
    double seconds = argc > 2 ? atof(argv[2]) : 20;
    int nclients = argc > 3 ? atoi(argv[3]) : 16;
    char sku[64], url[512], body[512];
    snprintf(sku, sizeof sku, "bench-http-%ld", (long)time(NULL));

    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *curl = new_handle(headers);
    snprintf(url, sizeof url, "%s/add_batch", base);
    snprintf(body, sizeof body, "{\"ref\":\"%s-b\",\"sku\":\"%s\",\"qty\":1000000000,\"eta\":null}",
             sku, sku);
    long status = post(curl, url, body);
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    if (status != 201) {
        fprintf(stderr, "bench_http: POST /add_batch answered %ld\n", status);
        return 1;
    }

    client_t *clients = calloc((size_t)nclients, sizeof *clients);
    pthread_t *threads = calloc((size_t)nclients, sizeof *threads);
    double t0 = now_s();
    for (int i = 0; i < nclients; i++) {
        clients[i] = (client_t){.base = base, .sku = sku, .id = i, .seconds = seconds};
        pthread_create(&threads[i], NULL, run_client, &clients[i]);
    }
    size_t total = 0;
    long ok = 0, other = 0;
    for (int i = 0; i < nclients; i++) {
        pthread_join(threads[i], NULL);
        total += clients[i].n;
        ok += clients[i].ok;
        other += clients[i].other;
    }
    double elapsed = now_s() - t0;
    double *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < nclients; i++) {
        memcpy(all + k, clients[i].latencies, clients[i].n * sizeof *all);
        k += clients[i].n;
        free(clients[i].latencies);
    }
    qsort(all, total, sizeof *all, cmp);
#define PCT(p) (total ? all[(size_t)((double)(total - 1) * (p))] : 0)
    printf("POST /allocate, %d clients, %.1f s: %zu requests, %.0f requests/s "
           "(202: %ld, other: %ld)\n",
           nclients, elapsed, total, (double)total / elapsed, ok, other);
    printf("latency ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n", PCT(0.50), PCT(0.90),
           PCT(0.99), total ? all[total - 1] : 0);
    free(all);
    free(clients);
    free(threads);
    curl_global_cleanup();
    return other ? 1 : 0;
}
