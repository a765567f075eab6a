/*
 * config.h - the processor's configuration: environment variables (12-factor), optionally
 * backed by a `--config FILE` of KEY=value lines. README.md and docs/operations.md list
 * every key.
 */
#ifndef AP_CONFIG_H
#define AP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ap/error.h"
#include "ap/log.h"

#define AP_DEFAULT_DATABASE_URL "postgresql://postgres@127.0.0.1:55432/allocation"

typedef struct ap_kv {
    char *key; /* a librdkafka property name, e.g. "security.protocol" */
    char *value;
} ap_kv_t;

typedef struct ap_config {
    char *database_url;
    char *bootstrap_servers;
    char *group_id;
    char *topic_prefix;
    char **command_topics; /* NULL-terminated */
    size_t ncommand_topics;
    ap_kv_t *kafka;        /* KAFKA_<NAME> pass-through properties */
    size_t nkafka;
    int topic_partitions;         /* partitions of topics the processor creates */
    int topic_replication_factor; /* -1: the broker's default */
    char *avro_wire_format;
    char *schema_registry_url;
    char *notify_to;
    char *notify_from;
    char *smtp_url;      /* secret: may hold credentials; NULL: emails are logged, not sent */
    char *smtp_username; /* secret; NULL: none (or in the URL) */
    char *smtp_password; /* secret */
    int email_retry_max_ms; /* the longest backoff of an email the SMTP server did not take */
    char *http_addr;                /* HOST:PORT the HTTP API listens on */
    int http_command_wait_ms;       /* how long a POST waits for its command's outcome */
    char *http_auth_token;          /* NULL: commands need no bearer token; never logged */
    int command_outcome_retention_hours; /* outcomes (idempotency keys) kept this long */
    ap_log_level_t log_level;
    bool log_json;
    int batch_max_messages;         /* commands per transaction, at most */
    int batch_max_wait_ms;          /* time spent gathering one batch, at most */
    int64_t backpressure_max_rows;  /* pause consuming while the outbox holds more ... */
    int64_t backpressure_max_age_ms; /* ... or its oldest row is older than this */
    size_t product_cache_bytes;     /* committed products kept between batches, about; shared
                                     * out among the consumer threads */
    int consumer_threads;           /* group members in this process, each with its own
                                     * Postgres session and share of the partitions */
} ap_config_t;

/*
 * Reads the configuration from `env` (an environ-style NULL-terminated array) and, when
 * `file` is not NULL, from that file; the environment wins where both set a key. On a bad
 * value returns AP_ERR_CONFIG with one line naming the key and the problem in `err`
 * (never a secret). On success the caller releases with ap_config_release.
 */
ap_err_t ap_config_load(ap_config_t *cfg, const char *file, char *const *env, char *err,
                        size_t errlen);
void ap_config_release(ap_config_t *cfg);

#endif
