/*
 * worker.c - a thread that naps and stops when asked (worker.h).
 */
#include "ap/worker.h"

#include <time.h>

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void beat(ap_worker_t *worker, int64_t until_ms)
{
    atomic_store(&worker->alive_until_ms, until_ms);
}

void ap_worker_init(ap_worker_t *worker)
{
    pthread_condattr_t attr;
    worker->started = false;
    atomic_init(&worker->stop, false);
    atomic_init(&worker->alive_until_ms, monotonic_ms());
    pthread_mutex_init(&worker->mutex, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&worker->wake, &attr);
    pthread_condattr_destroy(&attr);
}

ap_err_t ap_worker_start(ap_worker_t *worker, void *(*main)(void *), void *arg)
{
    if (pthread_create(&worker->thread, NULL, main, arg))
        return AP_ERR_INTERNAL;
    worker->started = true;
    return AP_OK;
}

bool ap_worker_stopping(ap_worker_t *worker)
{
    beat(worker, monotonic_ms());
    return atomic_load(&worker->stop);
}

int64_t ap_worker_silent_ms(ap_worker_t *worker)
{
    int64_t silent = monotonic_ms() - atomic_load(&worker->alive_until_ms);
    return silent > 0 ? silent : 0;
}

struct timespec ap_worker_deadline(int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    return until;
}

void ap_worker_nap(ap_worker_t *worker, int64_t ms)
{
    beat(worker, monotonic_ms() + ms); /* a nap is on purpose: alive until it ends */
    struct timespec until = ap_worker_deadline(ms);
    pthread_mutex_lock(&worker->mutex);
    while (!ap_worker_stopping(worker) &&
           pthread_cond_timedwait(&worker->wake, &worker->mutex, &until) == 0) {
    }
    pthread_mutex_unlock(&worker->mutex);
}

void ap_worker_stop(ap_worker_t *worker)
{
    if (!worker->started)
        return;
    pthread_mutex_lock(&worker->mutex);
    atomic_store(&worker->stop, true);
    pthread_cond_broadcast(&worker->wake);
    pthread_mutex_unlock(&worker->mutex);
    pthread_join(worker->thread, NULL);
    worker->started = false;
}

void ap_worker_release(ap_worker_t *worker)
{
    ap_worker_stop(worker);
    pthread_cond_destroy(&worker->wake);
    pthread_mutex_destroy(&worker->mutex);
}

void ap_worker_free_owner(ap_worker_t *worker, ap_worker_free_fn *free_owner, void *owner)
{
    ap_worker_release(worker);
    free_owner(owner); /* last: it may free `worker` */
}
