/*
 * consumer_pool.c - CONSUMER_THREADS consumers in one process (consumer_pool.h).
 *
 * The calling thread supervises: it turns the signal handler's flag into the members' stop
 * flag (an atomic, so no thread but the handler's reads a sig_atomic_t), notices a member
 * that gave up, and sums the members' health for the probes every SUPERVISE_MS.
 */
#include "entrypoints/consumer_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ap/bootstrap.h"
#include "ap/log.h"
#include "ap/worker.h"
#include "entrypoints/consumer.h"

#define SUPERVISE_MS 50

typedef struct member {
    ap_consumer_pool_t *pool;
    ap_config_t cfg; /* the pool's, with this member's share of the product cache */
    ap_runtime_t rt;
    bool wired;      /* rt holds a runtime */
    ap_health_t *health; /* the member's entry of the pool's `healths` */
    pthread_t thread;
    atomic_bool done; /* ap_consumer_run returned */
    int rc;
} member_t;

struct ap_consumer_pool {
    const ap_instruments_t *ins;
    atomic_bool stop; /* the members' stop flag */
    member_t *members;
    ap_health_t *healths; /* one each, summed for the probes (ap_health_sum) */
    size_t n;
};

ap_consumer_pool_t *ap_consumer_pool_new(const ap_config_t *cfg, const ap_instruments_t *ins,
                                         ap_err_t *err)
{
    ap_consumer_pool_t *pool = calloc(1, sizeof *pool);
    size_t n = cfg->consumer_threads > 0 ? (size_t)cfg->consumer_threads : 1;
    *err = AP_ERR_NOMEM;
    if (!pool || !(pool->members = calloc(n, sizeof *pool->members)) ||
        !(pool->healths = calloc(n, sizeof *pool->healths))) {
        if (pool)
            free(pool->members);
        free(pool);
        return NULL;
    }
    pool->ins = ins;
    atomic_init(&pool->stop, false);
    for (pool->n = 0; pool->n < n; pool->n++) {
        member_t *m = &pool->members[pool->n];
        m->pool = pool;
        m->cfg = *cfg;
        m->cfg.product_cache_bytes = cfg->product_cache_bytes / n;
        m->health = &pool->healths[pool->n];
        ap_health_init(m->health);
        atomic_init(&m->done, false);
        if ((*err = ap_bootstrap_runtime(&m->rt, &m->cfg))) {
            ap_consumer_pool_free(pool);
            return NULL;
        }
        m->wired = true;
    }
    *err = AP_OK;
    return pool;
}

void ap_consumer_pool_free(ap_consumer_pool_t *pool)
{
    if (!pool)
        return;
    for (size_t i = 0; i < pool->n; i++) {
        if (pool->members[i].wired)
            ap_runtime_release(&pool->members[i].rt);
    }
    free(pool->members);
    free(pool->healths);
    free(pool);
}

static void *member_main(void *arg)
{
    member_t *m = arg;
    char what[16];
    snprintf(what, sizeof what, "consumer-%zu", (size_t)(m - m->pool->members) + 1);
    ap_thread_name(what);
    m->rc = ap_consumer_run(&m->cfg, &m->rt.app, m->rt.outbox, m->rt.codec, m->health,
                            m->pool->ins, &m->pool->stop);
    atomic_store(&m->done, true);
    return NULL;
}

int ap_consumer_pool_run(ap_consumer_pool_t *pool, ap_health_t *health,
                         volatile sig_atomic_t *stop)
{
    const struct timespec tick = {0, SUPERVISE_MS * 1000000L};
    int rc = 0;
    size_t running = 0;

    if (pool->ins)
        ap_metric_set(pool->ins->consumer_threads, (double)pool->n);
    for (size_t i = 0; i < pool->n; i++) {
        member_t *m = &pool->members[i];
        /* The members start as their own threads only once all are wired, so a failure to
         * start one stops the others before they did any work worth waiting for. */
        if (pthread_create(&m->thread, NULL, member_main, m) != 0) {
            AP_ERROR("consumer", "cannot start consumer thread %zu of %zu", i + 1, pool->n);
            atomic_store(&pool->stop, true);
            rc = 1;
            break;
        }
        running++;
    }
    if (running > 0)
        AP_INFO("consumer", "%zu consumer thread(s) in group %s", running,
                pool->members[0].cfg.group_id);
    if (pool->ins)
        ap_metric_set(pool->ins->consumer_threads, (double)running);

    for (size_t done = 0; done < running;) {
        nanosleep(&tick, NULL);
        ap_health_sum(health, pool->healths, pool->n);
        done = 0;
        for (size_t i = 0; i < running; i++) {
            if (!atomic_load(&pool->members[i].done))
                continue;
            done++;
            if (!atomic_load(&pool->stop) && !*stop) {
                AP_ERROR("consumer", "consumer thread %zu of %zu stopped; stopping the others",
                         i + 1, pool->n);
                atomic_store(&pool->stop, true);
            }
        }
        if (*stop)
            atomic_store(&pool->stop, true);
    }
    for (size_t i = 0; i < running; i++) {
        pthread_join(pool->members[i].thread, NULL);
        rc = pool->members[i].rc ? 1 : rc;
    }
    atomic_store(&health->joined, false);
    if (pool->ins)
        ap_metric_set(pool->ins->consumer_threads, 0);
    return rc;
}
