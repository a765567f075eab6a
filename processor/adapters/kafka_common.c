/*
 * kafka_common.c - the configuration and logging every librdkafka client of ours shares.
 */
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "adapters/kafka_internal.h"
#include "ap/denial.h"
#include "ap/log.h"

static void log_cb(const rd_kafka_t *rk, int level, const char *facility, const char *text)
{
    ap_log_level_t ours = level <= LOG_ERR       ? AP_LOG_ERROR
                          : level <= LOG_WARNING ? AP_LOG_WARN
                          : level <= LOG_INFO    ? AP_LOG_INFO
                                                 : AP_LOG_DEBUG;
    /* A broker connection failure also reaches the client's error callback: say it once,
     * there. KAFKA_* settings go to every client, so each ignores the other kind's. */
    if (strcmp(facility, "FAIL") == 0 || strcmp(facility, "CONFWARN") == 0)
        ours = AP_LOG_DEBUG;
    ap_log(ours, "kafka", "%s %s: %s",
           rd_kafka_type(rk) == RD_KAFKA_PRODUCER ? "producer" : "consumer", facility, text);
}

static bool set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) == RD_KAFKA_CONF_OK)
        return true;
    AP_ERROR("kafka", "%s: %s", name, errstr);
    return false;
}

rd_kafka_conf_t *ap_kafka_conf_new(const ap_config_t *cfg, const char *const *defaults)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    bool ok = conf && set(conf, "bootstrap.servers", cfg->bootstrap_servers);

    for (const char *const *d = defaults; ok && d && d[0]; d += 2)
        ok = set(conf, d[0], d[1]);
    /* The user's KAFKA_* settings come last, so they can override the defaults. */
    for (size_t i = 0; ok && i < cfg->nkafka; i++)
        ok = set(conf, cfg->kafka[i].key, cfg->kafka[i].value);
    if (!ok) {
        if (conf)
            rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    return conf;
}

rd_kafka_t *ap_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf,
                         void (*error_cb)(rd_kafka_t *, int, const char *, void *), void *opaque)
{
    char errstr[512];
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, opaque);
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (!rk) {
        AP_ERROR("kafka", "cannot create %s: %s",
                 type == RD_KAFKA_PRODUCER ? "producer" : "consumer", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

bool ap_kafka_denied(int err, const char *reason)
{
    ap_denial_cause_t cause;
    switch (err) {
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
        cause = AP_DENIAL_AUTHENTICATION;
        break;
    case RD_KAFKA_RESP_ERR__SSL:
        cause = AP_DENIAL_TLS;
        break;
    default:
        return false;
    }
    /* librdkafka ends the text with timings ("(after 302ms in state AUTH_REQ, 1 identical
     * error(s) suppressed)"): without them, a repeat reads as a repeat and is not logged. */
    char text[512];
    snprintf(text, sizeof text, "%s", reason ? reason : "");
    char *timing = strstr(text, " (after ");
    if (timing)
        *timing = '\0';
    ap_denial_report(AP_SERVICE_KAFKA, cause, text);
    return true;
}

int64_t ap_kafka_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
