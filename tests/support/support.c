/*
 * support.c - helpers shared by the integration tests and benchmarks (see support.h).
 */
#include "support.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ap/log.h"
#include "ap/pg.h"

long long ap_test_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void ap_test_pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

void ap_test_sleep_next(struct timespec *next, long long period_ns)
{
    next->tv_nsec += period_ns;
    while (next->tv_nsec >= 1000000000L) {
        next->tv_sec++;
        next->tv_nsec -= 1000000000L;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, next, NULL);
}

char *ap_test_conninfo_with(const char *conninfo, const char *key, const char *value,
                            char **why)
{
    PQconninfoOption *options = PQconninfoParse(conninfo, why);
    size_t cap = 1, len = 0;
    char *out = NULL;

    if (!options)
        return NULL;
    /* Room for every keyword and value, each value escaped at worst twice over. */
    for (PQconninfoOption *o = options; o->keyword; o++) {
        const char *val = strcmp(o->keyword, key) == 0 ? value : o->val;
        if (val)
            cap += strlen(o->keyword) + 2 * strlen(val) + 4;
    }
    if (!(out = malloc(cap)))
        goto out;
    for (PQconninfoOption *o = options; o->keyword; o++) {
        const char *val = strcmp(o->keyword, key) == 0 ? value : o->val;
        if (!val)
            continue;
        len += (size_t)snprintf(out + len, cap - len, "%s='", o->keyword);
        for (const char *p = val; *p; p++) {
            if (*p == '\'' || *p == '\\')
                out[len++] = '\\';
            out[len++] = *p;
        }
        out[len++] = '\'';
        out[len++] = ' ';
    }
    out[len] = '\0';
out:
    PQconninfoFree(options);
    return out;
}

const char *ap_test_migrated_db(const char *test)
{
    const char *url = getenv("DATABASE_URL");
    if (!url || !*url) {
        fprintf(stderr, "%s: DATABASE_URL is not set; these tests need PostgreSQL "
                        "(deploy/local/test sets it)\n", test);
        exit(1);
    }
    ap_log_setup(AP_LOG_WARN, false);
    int applied;
    if (ap_pg_migrate(url, &applied) != AP_OK) {
        fprintf(stderr, "%s: cannot migrate the database at DATABASE_URL\n", test);
        exit(1);
    }
    return url;
}
