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

static void gateway_release(void *owner)
{
    ap_producer_free(((ap_command_gateway_t *)owner)->producer);
}

static ap_err_t gateway_setup(void *owner, const void *arg)
{
    ap_command_gateway_t *gateway = owner;
    const ap_config_t *cfg = arg;
    gateway->tail = &gateway->queue;
    atomic_store(&gateway->reachable, true);

    /* Kafka gets the whole wait to take the command, and at least a second. Ours first, so
     * a KAFKA_MESSAGE_TIMEOUT_MS of the operator's comes later and wins. */
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d",
             cfg->http_command_wait_ms > 1000 ? cfg->http_command_wait_ms : 1000);
    ap_kv_t *kafka = calloc(cfg->nkafka + 1, sizeof *kafka);
    if (!kafka)
        return AP_ERR_NOMEM;
    kafka[0] = (ap_kv_t){.key = (char *)"message.timeout.ms", .value = timeout};
    if (cfg->nkafka)
        memcpy(kafka + 1, cfg->kafka, cfg->nkafka * sizeof *cfg->kafka);
    ap_config_t ours = *cfg;
    ours.kafka = kafka;
    ours.nkafka = cfg->nkafka + 1;
    ap_err_t err = ap_producer_new(&ours, "allocation-processor-http", on_delivery, gateway,
                                   &gateway->producer);
    free(kafka); /* the producer keeps a copy of its configuration */
    return err;
}

static const ap_worker_kind_t gateway_kind = AP_WORKER_KIND(
    "http", ap_command_gateway_t, worker, gateway_setup, gateway_main, gateway_release);

ap_command_gateway_t *ap_command_gateway_start(const ap_config_t *cfg, ap_err_t *err)
{
    return ap_worker_spawn(&gateway_kind, cfg, err);
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

void ap_command_gateway_stop(ap_command_gateway_t *gateway)
{
    if (gateway)
        ap_worker_destroy(&gateway->worker);
}
