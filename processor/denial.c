/*
 * denial.c - the process's record of services that turn it away (ap/denial.h).
 *
 * A mutex guards two small records; reports come at the rate of reconnection attempts (a few a
 * second at most), so nothing here is on a hot path.
 */
#include "ap/denial.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ap/log.h"

#define REASON_SIZE 512

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    ap_denial_cause_t cause;
    char text[REASON_SIZE];
} records[AP_SERVICE_COUNT];

static const char *const service_names[] = {"postgres", "kafka"};
static const char *const cause_names[] = {"", "authentication failed", "TLS failed"};

void ap_denial_report(ap_service_t service, ap_denial_cause_t cause, const char *text)
{
    char line[REASON_SIZE];
    ap_log_one_line(text, line, sizeof line); /* libpq's messages span several lines */
    size_t len = strlen(line);

    pthread_mutex_lock(&lock);
    bool changed = records[service].cause != cause || strcmp(records[service].text, line) != 0;
    records[service].cause = cause;
    memcpy(records[service].text, line, len + 1);
    pthread_mutex_unlock(&lock);
    if (changed)
        ap_log(AP_LOG_ERROR, service_names[service], "refuses the connection: %s: %s",
               cause_names[cause], line);
}

void ap_denial_clear(ap_service_t service)
{
    pthread_mutex_lock(&lock);
    bool had = records[service].cause != AP_DENIAL_NONE;
    records[service].cause = AP_DENIAL_NONE;
    records[service].text[0] = '\0';
    pthread_mutex_unlock(&lock);
    if (had)
        ap_log(AP_LOG_INFO, service_names[service], "accepts the connection again");
}

ap_denial_cause_t ap_denial_get(ap_service_t service, char *reason, size_t len)
{
    pthread_mutex_lock(&lock);
    ap_denial_cause_t cause = records[service].cause;
    if (reason && len)
        snprintf(reason, len, "%s: %s", cause_names[cause], records[service].text);
    pthread_mutex_unlock(&lock);
    return cause;
}

ap_denial_cause_t ap_denial_classify_pg(const char *text)
{
    /* libpq's and the server's own words (the C locale's: the processor sets no other). */
    static const struct {
        const char *words;
        ap_denial_cause_t cause;
    } signs[] = {
        /* First, the TLS errors of a connection cut short (a server restarting): outages. */
        {"SSL SYSCALL error", AP_DENIAL_NONE},
        {"unexpected eof", AP_DENIAL_NONE},
        {"password authentication failed", AP_DENIAL_AUTHENTICATION},
        {"authentication failed for user", AP_DENIAL_AUTHENTICATION},
        {"no pg_hba.conf entry", AP_DENIAL_AUTHENTICATION},
        {"no password supplied", AP_DENIAL_AUTHENTICATION},
        {"SCRAM authentication", AP_DENIAL_AUTHENTICATION},
        {"certificate verify failed", AP_DENIAL_TLS},
        {"does not match host name", AP_DENIAL_TLS},
        {"root certificate file", AP_DENIAL_TLS},
        {"server does not support SSL", AP_DENIAL_TLS},
        {"SSL error", AP_DENIAL_TLS},
    };
    for (size_t i = 0; text && i < sizeof signs / sizeof *signs; i++) {
        if (strstr(text, signs[i].words))
            return signs[i].cause;
    }
    return AP_DENIAL_NONE;
}
