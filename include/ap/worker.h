/*
 * worker.h - what the processor's background threads share (the relay, the email sender, the
 * HTTP command gateway, the command-outcome listener): a thread that naps between attempts
 * and stops promptly when asked, even mid-nap.
 *
 * Not a thread pool and not a scheduler: one thread, one stop flag, one condition variable
 * on CLOCK_MONOTONIC. The owner may also guard its own fields (stats, a queue) with `mutex`
 * and signal its own changes on `wake`, waiting with ap_worker_deadline.
 *
 * The loop beats as it goes (each ap_worker_stopping and ap_worker_nap), so a liveness probe
 * can tell a loop that goes round, or naps on purpose, from one stuck in a call.
 */
#ifndef AP_WORKER_H
#define AP_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "ap/error.h"

typedef struct ap_worker {
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mutex; /* with `wake`, lets a stop cut a nap short; the owner's too */
    pthread_cond_t wake;   /* CLOCK_MONOTONIC */
    bool started;
    _Atomic int64_t alive_until_ms; /* CLOCK_MONOTONIC: the last beat, or a nap's end */
} ap_worker_t;

/* Readies the caller's storage; no thread yet. Release with ap_worker_release. */
void ap_worker_init(ap_worker_t *worker);

/* Runs main(arg) on a new thread; AP_ERR_INTERNAL (not logged) when it cannot. */
ap_err_t ap_worker_start(ap_worker_t *worker, void *(*main)(void *), void *arg);

/* True once a stop was asked. Any thread. */
bool ap_worker_stopping(ap_worker_t *worker);

/* Sleeps up to `ms`, less when asked to stop. The worker's thread. */
void ap_worker_nap(ap_worker_t *worker, int64_t ms);

/* Milliseconds (CLOCK_MONOTONIC) since the loop last beat; 0 while it naps. Any thread. */
int64_t ap_worker_silent_ms(ap_worker_t *worker);

/* The CLOCK_MONOTONIC time `ms` from now, for pthread_cond_timedwait on `wake`. */
struct timespec ap_worker_deadline(int64_t ms);

/* Asks the thread to stop, cuts its nap short and waits for it to return; a no-op when it
 * never started or has stopped. Another thread. */
void ap_worker_stop(ap_worker_t *worker);

/* Stops the thread (ap_worker_stop), then releases what ap_worker_init made. The owner
 * calls it before freeing what the thread uses. */
void ap_worker_release(ap_worker_t *worker);

/* Frees an owner (the struct the worker lives in) and what its thread used. */
typedef void ap_worker_free_fn(void *owner);

/* Tears an owner down in the one safe order: ap_worker_release, so the thread no longer
 * uses anything, then free_owner(owner), which may free the worker's own storage. The
 * owner's stop or free function, on another thread than the worker's. */
void ap_worker_free_owner(ap_worker_t *worker, ap_worker_free_fn *free_owner, void *owner);

#endif
