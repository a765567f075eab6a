/*
 * command_gateway.c - request threads queue records; one thread sends them with the
 * producer, flushes, and hands each delivery report back to its waiting request.
 *
 * The producer port belongs to one thread (producer.h), so request threads never touch it:
 * they link a request into the queue and wait on the gateway's condition variable. The
 * thread takes the whole queue at once, so concurrent requests share one produce request
 * and one flush.
 */
#include "entrypoints/command_gateway.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ap/log.h"

#define IDLE_WAIT_MS 100
#define FLUSH_MS 20

typedef struct request {
    const char *topic, *key, *value;
    const ap_header_t *headers;
    size_t nheaders;
    bool done;
    ap_err_t err;
    struct request *next;
} request_t;

struct ap_command_gateway {
    ap_producer_t *producer;
    pthread_t thread;
    pthread_mutex_t mutex; /* guards the queue, `done` flags and `stopping` */
    pthread_cond_t changed;
    request_t *queue, **tail;
    bool stopping;
    atomic_bool reachable;
    ap_kv_t *kafka; /* the configuration's pass-through properties, plus our timeout */
    char timeout[16];
};

static void finish(ap_command_gateway_t *gateway, request_t *req, ap_err_t err)
{
    pthread_mutex_lock(&gateway->mutex);
    req->err = err;
    req->done = true;
    pthread_cond_broadcast(&gateway->changed);
    pthread_mutex_unlock(&gateway->mutex);
}

static void on_delivery(void *ctx, void *opaque, ap_err_t err, const char *reason)
{
    ap_command_gateway_t *gateway = ctx;
    if (err)
        AP_WARN("http", "command not delivered to Kafka: %s", reason ? reason : ap_strerror(err));
    finish(gateway, opaque, err);
}

static void *gateway_main(void *arg)
{
    ap_command_gateway_t *gateway = arg;
    for (;;) {
        pthread_mutex_lock(&gateway->mutex);
        if (!gateway->queue && !gateway->stopping && ap_producer_pending(gateway->producer) == 0) {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += IDLE_WAIT_MS * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&gateway->changed, &gateway->mutex, &until);
        }
        request_t *batch = gateway->queue;
        gateway->queue = NULL;
        gateway->tail = &gateway->queue;
        bool stop = gateway->stopping;
        pthread_mutex_unlock(&gateway->mutex);

        for (request_t *req = batch, *next; req; req = next) {
            next = req->next;
            ap_err_t err = stop ? AP_ERR_UNAVAILABLE
                                : ap_producer_send(gateway->producer, req->topic, req->key,
                                                   strlen(req->key), req->value,
                                                   strlen(req->value), req->headers,
                                                   req->nheaders, req);
            if (err)
                finish(gateway, req, err);
        }
        if (stop) {
            ap_producer_purge(gateway->producer, 2000);
            break;
        }
        ap_producer_flush(gateway->producer, FLUSH_MS);
        ap_producer_poll(gateway->producer, 0);
        atomic_store(&gateway->reachable, ap_producer_reachable(gateway->producer));
    }
    return NULL;
}

ap_err_t ap_command_gateway_start(const ap_config_t *cfg, int timeout_ms,
                                  ap_command_gateway_t **out)
{
    ap_command_gateway_t *gateway = calloc(1, sizeof *gateway);
    ap_err_t err = AP_ERR_NOMEM;
    if (!gateway || !(gateway->kafka = calloc(cfg->nkafka + 1, sizeof *gateway->kafka)))
        goto fail;

    /* Ours first, so a KAFKA_MESSAGE_TIMEOUT_MS of the operator's comes later and wins. */
    snprintf(gateway->timeout, sizeof gateway->timeout, "%d", timeout_ms > 0 ? timeout_ms : 1);
    gateway->kafka[0] = (ap_kv_t){.key = (char *)"message.timeout.ms", .value = gateway->timeout};
    if (cfg->nkafka)
        memcpy(gateway->kafka + 1, cfg->kafka, cfg->nkafka * sizeof *cfg->kafka);
    ap_config_t ours = *cfg;
    ours.kafka = gateway->kafka;
    ours.nkafka = cfg->nkafka + 1;
    if ((err = ap_producer_new(&ours, "allocation-processor-http", on_delivery, gateway,
                               &gateway->producer)))
        goto fail;

    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&gateway->changed, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&gateway->mutex, NULL);
    gateway->tail = &gateway->queue;
    atomic_store(&gateway->reachable, true);
    if (pthread_create(&gateway->thread, NULL, gateway_main, gateway)) {
        pthread_cond_destroy(&gateway->changed);
        pthread_mutex_destroy(&gateway->mutex);
        err = AP_ERR_NOMEM;
        goto fail;
    }
    *out = gateway;
    return AP_OK;
fail:
    if (gateway) {
        ap_producer_free(gateway->producer);
        free(gateway->kafka);
        free(gateway);
    }
    return err;
}

ap_err_t ap_command_gateway_send(ap_command_gateway_t *gateway, const char *topic,
                                 const char *key, const char *value,
                                 const ap_header_t *headers, size_t nheaders)
{
    request_t req = {.topic = topic, .key = key, .value = value, .headers = headers,
                     .nheaders = nheaders};
    pthread_mutex_lock(&gateway->mutex);
    if (gateway->stopping) {
        pthread_mutex_unlock(&gateway->mutex);
        return AP_ERR_UNAVAILABLE;
    }
    *gateway->tail = &req;
    gateway->tail = &req.next;
    pthread_cond_broadcast(&gateway->changed);
    /* Every queued request gets a report (message.timeout.ms bounds it; stop purges). */
    while (!req.done)
        pthread_cond_wait(&gateway->changed, &gateway->mutex);
    pthread_mutex_unlock(&gateway->mutex);
    return req.err;
}

bool ap_command_gateway_reachable(ap_command_gateway_t *gateway)
{
    return atomic_load(&gateway->reachable);
}

void ap_command_gateway_stop(ap_command_gateway_t *gateway)
{
    if (!gateway)
        return;
    pthread_mutex_lock(&gateway->mutex);
    gateway->stopping = true;
    pthread_cond_broadcast(&gateway->changed);
    pthread_mutex_unlock(&gateway->mutex);
    pthread_join(gateway->thread, NULL);
    ap_producer_free(gateway->producer);
    pthread_cond_destroy(&gateway->changed);
    pthread_mutex_destroy(&gateway->mutex);
    free(gateway->kafka);
    free(gateway);
}
