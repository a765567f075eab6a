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
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ap/error.h"

typedef struct ap_worker {
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mutex; /* with `wake`, lets a stop cut a nap short; the owner's too */
    pthread_cond_t wake;   /* CLOCK_MONOTONIC */
    bool started;
    const struct ap_worker_kind *kind; /* of the owner, set by ap_worker_spawn */
    _Atomic int64_t alive_until_ms; /* CLOCK_MONOTONIC: the last beat, or a nap's end */
} ap_worker_t;

/*
 * What a kind of background service is made of: an owner struct that embeds an
 * ap_worker_t, how to set one up, what its thread runs, and how to free it. ap_worker_spawn
 * and ap_worker_destroy keep, for every kind, the one safe order: the thread stops before
 * anything it uses is freed, and a failed start frees what it got to.
 *
 *     static const ap_worker_kind_t relay_kind =
 *         AP_WORKER_KIND("relay", ap_relay_t, worker, relay_setup, relay_main, relay_release);
 *
 *     ap_relay_t *relay = ap_worker_spawn(&relay_kind, cfg, &err);   (NULL on failure)
 *     ...
 *     ap_worker_destroy(&relay->worker);
 */
typedef struct ap_worker_kind {
    const char *what; /* names the service in the log: "relay" */
    size_t size;      /* of the owner */
    size_t worker;    /* offsetof(owner, its ap_worker_t) */
    /* Fills a zeroed owner whose worker is ready (its mutex and condition variable may be
     * used) from `arg`; no thread yet. An error stops the spawn. */
    ap_err_t (*setup)(void *owner, const void *arg);
    void *(*main)(void *owner); /* the thread */
    /* Frees what setup made, as far as it got (fields it did not reach are zero); the
     * owner itself is freed after it. Runs once the thread has returned, or when it never
     * started. */
    void (*release)(void *owner);
} ap_worker_kind_t;

/*
 * Names the calling thread "ap-<what>" (cut to the 15 characters Linux keeps), as top -H,
 * ps -L, perf and gdb show it: "ap-relay", "ap-consumer-2". Every thread of the processor's
 * own is named so; librdkafka names its own ("rdk:main", "rdk:broker1"). Nothing on systems
 * without thread names.
 */
void ap_thread_name(const char *what);

/* The kind of owner type T whose ap_worker_t is its field `member`. */
#define AP_WORKER_KIND(what, T, member, setup, main, release)                                 \
    {(what), sizeof(T), offsetof(T, member), (setup), (main), (release)}

/*
 * Allocates a zeroed owner of `kind`, readies its worker, runs kind->setup(owner, arg),
 * then starts kind->main(owner) on a new thread. Returns the owner, or NULL with `*err`
 * set: AP_ERR_NOMEM, setup's error, or AP_ERR_INTERNAL (logged) when no thread can start;
 * whatever was made is freed (kind->release, then the owner).
 */
void *ap_worker_spawn(const ap_worker_kind_t *kind, const void *arg, ap_err_t *err);

/* Asks the thread of the owner that `worker` lives in to stop, cuts its nap short, waits
 * for it to return, then frees the owner (kind->release, then the owner itself). NULL does
 * nothing. Another thread than the worker's. */
void ap_worker_destroy(ap_worker_t *worker);

/* True once a stop was asked. Any thread. */
bool ap_worker_stopping(ap_worker_t *worker);

/* Sleeps up to `ms`, less when asked to stop. The worker's thread. */
void ap_worker_nap(ap_worker_t *worker, int64_t ms);

/* Milliseconds (CLOCK_MONOTONIC) since the loop last beat; 0 while it naps. Any thread. */
int64_t ap_worker_silent_ms(ap_worker_t *worker);

/* The CLOCK_MONOTONIC time `ms` from now, for pthread_cond_timedwait on `wake`. */
struct timespec ap_worker_deadline(int64_t ms);

#endif
