/*
 * health.c - the loops' health flags (health.h): set, logged when they change.
 */
#include "entrypoints/health.h"

#include <limits.h>
#include <time.h>

#include "ap/log.h"

void ap_health_init(ap_health_t *health)
{
    atomic_init(&health->database, true);
    atomic_init(&health->database_fault, AP_FAULT_NONE);
    atomic_init(&health->kafka, true);
    atomic_init(&health->backpressure, false);
    atomic_init(&health->joined, false);
    atomic_init(&health->heartbeat_ms, ap_health_now_ms());
}

int64_t ap_health_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ap_health_set_database(ap_health_t *health, bool ok, ap_fault_t fault)
{
    if (ok)
        fault = AP_FAULT_NONE;
    else if (fault == AP_FAULT_NONE)
        fault = AP_FAULT_UNREACHABLE;
    ap_fault_t was = (ap_fault_t)atomic_exchange(&health->database_fault, (int)fault);
    atomic_store(&health->database, ok);
    if (was == fault)
        return;
    if (ok)
        AP_INFO("consumer", "Postgres takes writes again: resuming");
    else
        AP_WARN("consumer", "Postgres %s; commands wait in Kafka and are applied once it "
                            "passes (allocation_postgres_fault{fault=\"%s\"})",
                ap_fault_text(fault), ap_fault_label(fault));
}

void ap_health_set_kafka(ap_health_t *health, bool ok)
{
    if (atomic_exchange(&health->kafka, ok) != ok)
        AP_INFO("consumer", "Kafka %s", ok ? "reachable again" : "unreachable");
}

void ap_health_sum(ap_health_t *sum, const ap_health_t *each, size_t n)
{
    bool database = true, kafka = true, joined = true, backpressure = false;
    int fault = AP_FAULT_NONE;
    long long heartbeat = LLONG_MAX;

    for (size_t i = 0; i < n; i++) {
        const ap_health_t *h = &each[i];
        if (database && !atomic_load(&h->database)) {
            database = false;
            fault = atomic_load(&h->database_fault);
        }
        kafka = kafka && atomic_load(&h->kafka);
        joined = joined && atomic_load(&h->joined);
        backpressure = backpressure || atomic_load(&h->backpressure);
        long long beat = atomic_load(&h->heartbeat_ms);
        heartbeat = beat < heartbeat ? beat : heartbeat;
    }
    atomic_store(&sum->database_fault, fault); /* before the flag its readers look at */
    atomic_store(&sum->database, database);
    atomic_store(&sum->kafka, kafka);
    atomic_store(&sum->joined, joined);
    atomic_store(&sum->backpressure, backpressure);
    if (n > 0)
        atomic_store(&sum->heartbeat_ms, heartbeat);
}
