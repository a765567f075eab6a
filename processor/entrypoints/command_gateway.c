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
#include "ap/worker.h"

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
    ap_worker_t worker; /* its mutex guards the queue and `done` flags; `wake` says either
                         * changed */
    request_t *queue, **tail;
    atomic_bool reachable;
    ap_kv_t *kafka; /* the configuration's pass-through properties, plus our timeout */
    char timeout[16];
};

static void finish(ap_command_gateway_t *gateway, request_t *req, ap_err_t err)
{
    pthread_mutex_lock(&gateway->worker.mutex);
    req->err = err;
    req->done = true;
    pthread_cond_broadcast(&gateway->worker.wake);
    pthread_mutex_unlock(&gateway->worker.mutex);
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
        pthread_mutex_lock(&gateway->worker.mutex);
        if (!gateway->queue && !ap_worker_stopping(&gateway->worker) &&
            ap_producer_pending(gateway->producer) == 0) {
            struct timespec until = ap_worker_deadline(IDLE_WAIT_MS);
            pthread_cond_timedwait(&gateway->worker.wake, &gateway->worker.mutex, &until);
        }
        request_t *batch = gateway->queue;
        gateway->queue = NULL;
        gateway->tail = &gateway->queue;
        bool stop = ap_worker_stopping(&gateway->worker);
        pthread_mutex_unlock(&gateway->worker.mutex);

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
    if (!gateway)
        return AP_ERR_NOMEM;
    ap_worker_init(&gateway->worker);
    if (!(gateway->kafka = calloc(cfg->nkafka + 1, sizeof *gateway->kafka)))
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

    gateway->tail = &gateway->queue;
    atomic_store(&gateway->reachable, true);
    if ((err = ap_worker_start(&gateway->worker, gateway_main, gateway)))
        goto fail;
    *out = gateway;
    return AP_OK;
fail:
    ap_command_gateway_stop(gateway);
    return err;
}

ap_err_t ap_command_gateway_send(ap_command_gateway_t *gateway, const char *topic,
                                 const char *key, const char *value,
                                 const ap_header_t *headers, size_t nheaders)
{
    request_t req = {.topic = topic, .key = key, .value = value, .headers = headers,
                     .nheaders = nheaders};
    pthread_mutex_lock(&gateway->worker.mutex);
    if (ap_worker_stopping(&gateway->worker)) {
        pthread_mutex_unlock(&gateway->worker.mutex);
        return AP_ERR_UNAVAILABLE;
    }
    *gateway->tail = &req;
    gateway->tail = &req.next;
    pthread_cond_broadcast(&gateway->worker.wake);
    /* Every queued request gets a report (message.timeout.ms bounds it; stop purges). */
    while (!req.done)
        pthread_cond_wait(&gateway->worker.wake, &gateway->worker.mutex);
    pthread_mutex_unlock(&gateway->worker.mutex);
    return req.err;
}

bool ap_command_gateway_reachable(ap_command_gateway_t *gateway)
{
    return atomic_load(&gateway->reachable);
}

static void gateway_free(void *owner)
{
    ap_command_gateway_t *gateway = owner;
    ap_producer_free(gateway->producer);
    free(gateway->kafka);
    free(gateway);
}

void ap_command_gateway_stop(ap_command_gateway_t *gateway)
{
    if (gateway)
        ap_worker_free_owner(&gateway->worker, gateway_free, gateway);
}
