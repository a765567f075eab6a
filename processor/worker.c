/*
 * worker.c - a thread that naps and stops when asked (worker.h).
 */
#include "ap/worker.h"

#include "ap/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

void ap_thread_name(const char *what)
{
#ifdef __linux__
    char name[16]; /* what the kernel keeps, NUL included */
    snprintf(name, sizeof name, "ap-%s", what);
    (void)prctl(PR_SET_NAME, name, 0, 0, 0);
#else
    (void)what;
#endif
}

/* Every worker thread starts here: named after its kind, then the kind's main. */
static void *worker_thread(void *arg)
{
    ap_worker_t *worker = arg;
    const ap_worker_kind_t *kind = worker->kind;
    ap_thread_name(kind->what);
    return kind->main((char *)worker - kind->worker);
}

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

static void worker_init(ap_worker_t *worker)
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

void *ap_worker_spawn(const ap_worker_kind_t *kind, const void *arg, ap_err_t *err)
{
    void *owner = calloc(1, kind->size);
    if (!owner) {
        *err = AP_ERR_NOMEM;
        return NULL;
    }
    ap_worker_t *worker = (ap_worker_t *)((char *)owner + kind->worker);
    worker_init(worker);
    worker->kind = kind;
    if ((*err = kind->setup(owner, arg)) == AP_OK) {
        if (pthread_create(&worker->thread, NULL, worker_thread, worker) == 0) {
            worker->started = true;
            return owner;
        }
        AP_ERROR(kind->what, "cannot start the %s thread", kind->what);
        *err = AP_ERR_INTERNAL;
    }
    ap_worker_destroy(worker);
    return NULL;
}

void ap_worker_destroy(ap_worker_t *worker)
{
    if (!worker)
        return;
    const ap_worker_kind_t *kind = worker->kind;
    void *owner = (char *)worker - kind->worker;
    if (worker->started) {
        pthread_mutex_lock(&worker->mutex);
        atomic_store(&worker->stop, true);
        pthread_cond_broadcast(&worker->wake);
        pthread_mutex_unlock(&worker->mutex);
        pthread_join(worker->thread, NULL);
    }
    pthread_cond_destroy(&worker->wake);
    pthread_mutex_destroy(&worker->mutex);
    kind->release(owner);
    free(owner); /* and `worker` with it */
}
