/*
 * config.c - configuration from the environment and an optional KEY=value file.
 *
 * Every value is checked here, once, so that a bad one stops the program at start-up with
 * a line naming the key, and nothing later has to second-guess the config. The KAFKA_*
 * pass-through properties are checked by librdkafka itself on a scratch configuration.
 */
#include "ap/config.h"
#include "ap/topics.h"

#include "ap/http.h"
#include "ap/secret.h"

#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Keys with a meaning of their own; any other KAFKA_<NAME> goes to librdkafka. */
static const char *const known_keys[] = {
    "DATABASE_URL", "DATABASE_URL_FILE", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_GROUP_ID", "COMMAND_TOPICS",
    "TOPIC_PREFIX", "TOPIC_PARTITIONS", "TOPIC_REPLICATION_FACTOR", "AVRO_WIRE_FORMAT",
    "SCHEMA_REGISTRY_URL", "NOTIFY_EMAIL_TO", "NOTIFY_EMAIL_FROM", "SMTP_URL", "HTTP_ADDR",
    "LOG_LEVEL", "LOG_FORMAT", "BATCH_MAX_MESSAGES", "BATCH_MAX_WAIT_MS",
    "BACKPRESSURE_MAX_ROWS", "BACKPRESSURE_MAX_AGE_MS", "PRODUCT_CACHE_MB", "CONSUMER_THREADS",
    /* email (secrets also as <NAME>_FILE) */
    "SMTP_URL_FILE", "SMTP_USERNAME", "SMTP_USERNAME_FILE", "SMTP_PASSWORD",
    "SMTP_PASSWORD_FILE", "EMAIL_RETRY_MAX_MS",
    /* HTTP */
    "HTTP_COMMAND_WAIT_MS", "HTTP_AUTH_TOKEN", "HTTP_AUTH_TOKEN_FILE",
    "COMMAND_OUTCOME_RETENTION_HOURS", NULL};

/* Collected KEY=value settings, later ones replacing earlier ones. */
typedef struct settings {
    ap_kv_t *items;
    size_t n;
} settings_t;

static bool is_known(const char *key)
{
    for (const char *const *k = known_keys; *k; k++) {
        if (strcmp(*k, key) == 0)
            return true;
    }
    return false;
}

static bool is_ours(const char *key)
{
    return is_known(key) || strncmp(key, "KAFKA_", 6) == 0;
}

static ap_err_t settings_put(settings_t *s, const char *key, size_t keylen, const char *value)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strlen(s->items[i].key) == keylen && memcmp(s->items[i].key, key, keylen) == 0) {
            char *copy = strdup(value);
            if (!copy)
                return AP_ERR_NOMEM;
            free(s->items[i].value);
            s->items[i].value = copy;
            return AP_OK;
        }
    }
    ap_kv_t *grown = realloc(s->items, (s->n + 1) * sizeof *grown);
    if (!grown)
        return AP_ERR_NOMEM;
    s->items = grown;
    ap_kv_t *kv = &s->items[s->n];
    kv->key = strndup(key, keylen);
    kv->value = strdup(value);
    if (!kv->key || !kv->value) {
        free(kv->key);
        free(kv->value);
        return AP_ERR_NOMEM;
    }
    s->n++;
    return AP_OK;
}

static const char *settings_get(const settings_t *s, const char *key)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->items[i].key, key) == 0)
            return s->items[i].value;
    }
    return NULL;
}

static void settings_release(settings_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->items[i].key);
        free(s->items[i].value);
    }
    free(s->items);
}

static char *trim(char *text)
{
    while (isspace((unsigned char)*text))
        text++;
    size_t len = strlen(text);
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        text[--len] = '\0';
    return text;
}

/* `text` into `out` with whatever stands between double quotes replaced by "...". */
static const char *unquote(const char *text, char *out, size_t outlen)
{
    size_t len = 0;
    bool quoted = false;
    for (const char *p = text; *p && len + 6 < outlen; p++) {
        if (*p == '"' && !quoted)
            len += (size_t)snprintf(out + len, outlen - len, "\"...\"");
        if (*p == '"')
            quoted = !quoted;
        else if (!quoted && *p != '\n')
            out[len++] = *p;
    }
    out[len] = '\0';
    return out;
}

static ap_err_t read_file(settings_t *s, const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    char line[4096];
    int lineno = 0;
    ap_err_t rc = AP_OK;

    if (!fp) {
        snprintf(err, errlen, "config file %s: %s", path, strerror(errno));
        return AP_ERR_CONFIG;
    }
    while (rc == AP_OK && fgets(line, sizeof line, fp)) {
        lineno++;
        char *text = trim(line);
        if (*text == '\0' || *text == '#')
            continue;
        if (strncmp(text, "export ", 7) == 0)
            text = trim(text + 7);
        char *eq = strchr(text, '=');
        if (!eq) {
            snprintf(err, errlen, "config file %s line %d: expected KEY=value", path, lineno);
            rc = AP_ERR_CONFIG;
            break;
        }
        *eq = '\0';
        char *key = trim(text), *value = trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && (value[0] == '"' || value[0] == '\'') && value[vlen - 1] == value[0]) {
            value[vlen - 1] = '\0';
            value++;
        }
        if (!is_ours(key)) {
            snprintf(err, errlen, "config file %s line %d: unknown key %s", path, lineno, key);
            rc = AP_ERR_CONFIG;
            break;
        }
        rc = settings_put(s, key, strlen(key), value);
    }
    fclose(fp);
    return rc;
}

static ap_err_t read_env(settings_t *s, char *const *env)
{
    for (; env && *env; env++) {
        const char *eq = strchr(*env, '=');
        if (!eq)
            continue;
        size_t keylen = (size_t)(eq - *env);
        char key[128];
        if (keylen >= sizeof key)
            continue;
        memcpy(key, *env, keylen);
        key[keylen] = '\0';
        if (!is_ours(key))
            continue;
        ap_err_t rc = settings_put(s, key, keylen, eq + 1);
        if (rc)
            return rc;
    }
    return AP_OK;
}

/* ---------------------------------------------------------------- interpreting values */

static bool dup_into(char **dst, const char *value)
{
    free(*dst);
    *dst = value ? strdup(value) : NULL;
    return !value || *dst;
}

static bool parse_int(const char *text, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return false;
    *out = (int)v;
    return true;
}

/* An integer setting in min..max, or `fallback` when unset; false (with `err`) when bad. */
static bool number(const settings_t *s, const char *key, long min, long max, long fallback,
                   long *out, char *err, size_t errlen)
{
    const char *v = settings_get(s, key);
    int value = (int)fallback;
    if (v && *v && !parse_int(v, min, max, &value)) {
        snprintf(err, errlen, "%s: \"%s\" is not an integer in %ld..%ld", key, v, min, max);
        return false;
    }
    *out = value;
    return true;
}

/* Kafka's legal topic characters: ASCII alphanumerics, '.', '_' and '-'. */
static bool valid_topic(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 249)
        return false;
    for (const char *p = name; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return false;
    }
    return true;
}

static ap_err_t split_topics(ap_config_t *cfg, const char *list, char *err, size_t errlen)
{
    char *copy = strdup(list), *save = NULL;
    ap_err_t rc = AP_OK;
    if (!copy)
        return AP_ERR_NOMEM;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *name = trim(tok);
        if (*name == '\0')
            continue;
        if (!valid_topic(name)) {
            snprintf(err, errlen, "COMMAND_TOPICS: invalid topic name \"%s\"", name);
            rc = AP_ERR_CONFIG;
            break;
        }
        char **grown = realloc(cfg->command_topics, (cfg->ncommand_topics + 2) * sizeof *grown);
        if (!grown || !(grown[cfg->ncommand_topics] = strdup(name))) {
            if (grown)
                cfg->command_topics = grown;
            rc = AP_ERR_NOMEM;
            break;
        }
        cfg->command_topics = grown;
        cfg->command_topics[++cfg->ncommand_topics] = NULL;
    }
    free(copy);
    if (rc == AP_OK && cfg->ncommand_topics == 0) {
        snprintf(err, errlen, "COMMAND_TOPICS: no topic given");
        rc = AP_ERR_CONFIG;
    }
    return rc;
}

/*
 * A secret-bearing setting: KEY's value, or the contents of the file KEY_FILE names (a
 * Kubernetes Secret mount; trailing line ends dropped). NULL when neither is set. The error
 * names the key and the file, never the value.
 */
static ap_err_t secret(const settings_t *s, const char *key, char **out, char *err,
                       size_t errlen)
{
    char file_key[160];
    snprintf(file_key, sizeof file_key, "%s_FILE", key);
    const char *value = settings_get(s, key), *path = settings_get(s, file_key);
    if (value && *value && path && *path) {
        snprintf(err, errlen, "%s and %s: set one or the other, not both", key, file_key);
        return AP_ERR_CONFIG;
    }
    if (!path || !*path)
        return dup_into(out, value && *value ? value : NULL) ? AP_OK : AP_ERR_NOMEM;

    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errlen, "%s: %s: %s", file_key, path, strerror(errno));
        return AP_ERR_CONFIG;
    }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, fp);
    bool too_long = n == sizeof buf && fgetc(fp) != EOF;
    fclose(fp);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    char *copy = !too_long && n ? strdup(buf) : NULL;
    ap_secret_wipe(buf, sizeof buf);
    if (too_long) {
        snprintf(err, errlen, "%s: %s is longer than %zu bytes", file_key, path, sizeof buf - 1);
        return AP_ERR_CONFIG;
    }
    if (n == 0) {
        snprintf(err, errlen, "%s: %s is empty", file_key, path);
        return AP_ERR_CONFIG;
    }
    if (!copy)
        return AP_ERR_NOMEM;
    ap_secret_free(*out);
    *out = copy;
    return AP_OK;
}

/*
 * The text settings, each with the field it fills and its default (NULL: unset unless
 * given). A secret may come from KEY_FILE instead (see secret()) and is wiped when freed.
 * ap_config_release frees what this table names, so every char * field of ap_config_t that
 * is not a list belongs here.
 */
static const struct text_setting {
    const char *key;
    size_t field; /* offset of a char * in ap_config_t */
    const char *fallback;
    bool secret;
} texts[] = {
    {"DATABASE_URL", offsetof(ap_config_t, database_url), AP_DEFAULT_DATABASE_URL, true},
    {"KAFKA_BOOTSTRAP_SERVERS", offsetof(ap_config_t, bootstrap_servers), "127.0.0.1:9092",
     false},
    {"KAFKA_GROUP_ID", offsetof(ap_config_t, group_id), "allocation-processor", false},
    {"TOPIC_PREFIX", offsetof(ap_config_t, topic_prefix), "allocation", false},
    {"AVRO_WIRE_FORMAT", offsetof(ap_config_t, avro_wire_format), "single-object", false},
    {"SCHEMA_REGISTRY_URL", offsetof(ap_config_t, schema_registry_url), NULL, false},
    {"NOTIFY_EMAIL_TO", offsetof(ap_config_t, notify_to), "stock@made.com", false},
    {"NOTIFY_EMAIL_FROM", offsetof(ap_config_t, notify_from), "allocations@example.com", false},
    {"SMTP_URL", offsetof(ap_config_t, smtp_url), NULL, true},
    {"SMTP_USERNAME", offsetof(ap_config_t, smtp_username), NULL, true},
    {"SMTP_PASSWORD", offsetof(ap_config_t, smtp_password), NULL, true},
    {"HTTP_ADDR", offsetof(ap_config_t, http_addr), "127.0.0.1:8080", false},
    {"HTTP_AUTH_TOKEN", offsetof(ap_config_t, http_auth_token), NULL, true},
};

static char **text_field(ap_config_t *cfg, const struct text_setting *text)
{
    return (char **)((char *)cfg + text->field);
}

/* Fills every field `texts` names: the value given (an empty one counts as unset), or the
 * default. */
static ap_err_t read_texts(ap_config_t *cfg, const settings_t *s, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        const struct text_setting *text = &texts[i];
        char **field = text_field(cfg, text);
        const char *value = text->secret ? NULL : settings_get(s, text->key);
        ap_err_t rc = AP_OK;
        if (text->secret)
            rc = secret(s, text->key, field, err, errlen); /* KEY or KEY_FILE */
        else if (!dup_into(field, value && *value ? value : NULL))
            rc = AP_ERR_NOMEM;
        if (!rc && !*field && text->fallback && !dup_into(field, text->fallback))
            rc = AP_ERR_NOMEM;
        if (rc)
            return rc;
    }
    return AP_OK;
}

/* KAFKA_SECURITY_PROTOCOL -> security.protocol (`keylen` bytes of `key`) */
static char *kafka_property(const char *key, size_t keylen)
{
    char *name = strndup(key + 6, keylen - 6);
    if (!name)
        return NULL;
    for (char *p = name; *p; p++)
        *p = *p == '_' ? '.' : (char)tolower((unsigned char)*p);
    return name;
}

static bool has_property(const ap_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nkafka; i++) {
        if (strcmp(cfg->kafka[i].key, name) == 0)
            return true;
    }
    return false;
}

/*
 * The KAFKA_<NAME> pass-through properties. KAFKA_<NAME>_FILE reads <NAME>'s value from a
 * file (KAFKA_SASL_PASSWORD_FILE: no librdkafka property ends in ".file"), so a SASL
 * password or a key's passphrase can come from a Secret mount like any other secret.
 */
static ap_err_t collect_kafka(ap_config_t *cfg, const settings_t *s, char *err, size_t errlen)
{
    char errstr[512], key[160];
    rd_kafka_conf_t *scratch = rd_kafka_conf_new();
    ap_err_t rc = AP_OK;

    for (size_t i = 0; i < s->n && rc == AP_OK; i++) {
        const char *name_key = s->items[i].key;
        if (strncmp(name_key, "KAFKA_", 6) != 0 || is_known(name_key))
            continue;
        size_t keylen = strlen(name_key);
        if (keylen > 11 && strcmp(name_key + keylen - 5, "_FILE") == 0)
            keylen -= 5;
        if (keylen >= sizeof key)
            continue; /* read_env skips such keys too: no property is that long */
        memcpy(key, name_key, keylen);
        key[keylen] = '\0';
        char *name = kafka_property(key, keylen), *value = NULL;
        if (!name) {
            rc = AP_ERR_NOMEM;
            break;
        }
        if (has_property(cfg, name)) { /* KAFKA_X and KAFKA_X_FILE: one entry */
            free(name);
            continue;
        }
        if ((rc = secret(s, key, &value, err, errlen)) || (!value && !(value = strdup("")))) {
            free(name);
            rc = rc ? rc : AP_ERR_NOMEM;
            break;
        }
        ap_kv_t *grown = realloc(cfg->kafka, (cfg->nkafka + 1) * sizeof *grown);
        if (!grown) {
            free(name);
            ap_secret_free(value);
            rc = AP_ERR_NOMEM;
            break;
        }
        cfg->kafka = grown;
        cfg->kafka[cfg->nkafka++] = (ap_kv_t){.key = name, .value = value};
        /* librdkafka quotes the value it refuses when the property takes one of a list
         * ("Invalid value "x" for ..."): that value may be a secret put in the wrong key. */
        if (rd_kafka_conf_set(scratch, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
            char clean[512];
            snprintf(err, errlen, "%s: %s", key,
                     *value && strstr(errstr, value) ? unquote(errstr, clean, sizeof clean)
                                                     : errstr);
            rc = AP_ERR_CONFIG;
        }
    }
    rd_kafka_conf_destroy(scratch);
    return rc;
}

/* ---------------------------------------------------------------- email settings */

/* A bare address (local@domain), nothing a header or an SMTP command could trip on. */
static bool valid_address(const char *address)
{
    const char *at = strrchr(address, '@');
    if (!at || at == address || !at[1] || strlen(address) > 254)
        return false;
    for (const char *p = address; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c == 0x7f || strchr("<>()[],;:\\\"", c))
            return false;
    }
    return true;
}

static ap_err_t email_settings(ap_config_t *cfg, const settings_t *s, char *err, size_t errlen)
{
    long retry_max;

    if (!valid_address(cfg->notify_to)) {
        snprintf(err, errlen, "NOTIFY_EMAIL_TO: \"%s\" is not an address like stock@made.com",
                 cfg->notify_to);
        return AP_ERR_CONFIG;
    }
    if (!valid_address(cfg->notify_from)) {
        snprintf(err, errlen,
                 "NOTIFY_EMAIL_FROM: \"%s\" is not an address like allocations@example.com",
                 cfg->notify_from);
        return AP_ERR_CONFIG;
    }
    /* The URL may hold a password: the message never repeats it. */
    if (cfg->smtp_url && strncasecmp(cfg->smtp_url, "smtp://", 7) != 0 &&
        strncasecmp(cfg->smtp_url, "smtps://", 8) != 0) {
        snprintf(err, errlen, "SMTP_URL: must start with smtp:// or smtps://");
        return AP_ERR_CONFIG;
    }
    if (!number(s, "EMAIL_RETRY_MAX_MS", 100, 86400000, 60000, &retry_max, err, errlen))
        return AP_ERR_CONFIG;
    cfg->email_retry_max_ms = (int)retry_max;
    return AP_OK;
}

ap_err_t ap_config_load(ap_config_t *cfg, const char *file, char *const *env, char *err,
                        size_t errlen)
{
    settings_t s = {0};
    ap_err_t rc;
    const char *v;

    memset(cfg, 0, sizeof *cfg);
    err[0] = '\0';
    if ((file && (rc = read_file(&s, file, err, errlen))) || (rc = read_env(&s, env)))
        goto out;

    if ((rc = read_texts(cfg, &s, err, errlen)))
        goto out;
    rc = AP_ERR_CONFIG;
    char *pqerr = NULL;
    PQconninfoOption *opts = PQconninfoParse(cfg->database_url, &pqerr);
    if (!opts) {
        /* libpq quotes the piece it could not read, which may be the password: not that. */
        char why[256];
        snprintf(err, errlen, "DATABASE_URL: %s",
                 pqerr ? unquote(trim(pqerr), why, sizeof why) : "cannot be parsed");
        PQfreemem(pqerr);
        goto out;
    }
    PQconninfoFree(opts);

    if (!valid_topic(cfg->topic_prefix)) {
        snprintf(err, errlen, "TOPIC_PREFIX: \"%s\" is not a valid Kafka topic name",
                 cfg->topic_prefix);
        goto out;
    }
    if (*cfg->group_id == '\0') {
        snprintf(err, errlen, "KAFKA_GROUP_ID: must not be empty");
        goto out;
    }

    v = settings_get(&s, "COMMAND_TOPICS");
    char defaults[AP_TOPIC_SIZE];
    ap_topic_commands(cfg->topic_prefix, defaults, sizeof defaults);
    if ((rc = split_topics(cfg, v && *v ? v : defaults, err, errlen)))
        goto out;
    rc = AP_ERR_CONFIG;

    long partitions, replication;
    if (!number(&s, "TOPIC_PARTITIONS", 1, 10000, 3, &partitions, err, errlen) ||
        !number(&s, "TOPIC_REPLICATION_FACTOR", -1, 100, -1, &replication, err, errlen))
        goto out;
    cfg->topic_partitions = (int)partitions;
    cfg->topic_replication_factor = (int)replication;

    if (strcmp(cfg->avro_wire_format, "single-object") != 0 &&
        strcmp(cfg->avro_wire_format, "confluent") != 0) {
        snprintf(err, errlen, "AVRO_WIRE_FORMAT: \"%s\" is neither single-object nor confluent",
                 cfg->avro_wire_format);
        goto out;
    }
    if (strcmp(cfg->avro_wire_format, "confluent") == 0 && !cfg->schema_registry_url) {
        snprintf(err, errlen, "SCHEMA_REGISTRY_URL: required when AVRO_WIRE_FORMAT=confluent");
        goto out;
    }

    cfg->log_level = AP_LOG_INFO;
    if ((v = settings_get(&s, "LOG_LEVEL")) && *v && !ap_log_level_parse(v, &cfg->log_level)) {
        snprintf(err, errlen, "LOG_LEVEL: \"%s\" is not one of debug, info, warn, error", v);
        goto out;
    }
    if ((v = settings_get(&s, "LOG_FORMAT")) && *v) {
        if (strcmp(v, "json") != 0 && strcmp(v, "text") != 0) {
            snprintf(err, errlen, "LOG_FORMAT: \"%s\" is neither text nor json", v);
            goto out;
        }
        cfg->log_json = strcmp(v, "json") == 0;
    }

    long batch_max, batch_wait, max_rows, max_age, cache_mb, threads;
    if (!number(&s, "BATCH_MAX_MESSAGES", 1, 100000, 500, &batch_max, err, errlen) ||
        !number(&s, "BATCH_MAX_WAIT_MS", 0, 60000, 10, &batch_wait, err, errlen) ||
        !number(&s, "BACKPRESSURE_MAX_ROWS", 1, 1000000000, 100000, &max_rows, err, errlen) ||
        !number(&s, "BACKPRESSURE_MAX_AGE_MS", 1, 1000000000, 30000, &max_age, err, errlen) ||
        !number(&s, "PRODUCT_CACHE_MB", 0, 1048576, 16, &cache_mb, err, errlen) ||
        !number(&s, "CONSUMER_THREADS", 1, 64, 1, &threads, err, errlen))
        goto out;
    cfg->batch_max_messages = (int)batch_max;
    cfg->batch_max_wait_ms = (int)batch_wait;
    cfg->backpressure_max_rows = max_rows;
    cfg->backpressure_max_age_ms = max_age;
    cfg->product_cache_bytes = (size_t)cache_mb * 1024 * 1024;
    cfg->consumer_threads = (int)threads;

    if ((rc = email_settings(cfg, &s, err, errlen)))
        goto out;
    rc = AP_ERR_CONFIG;
    char host[256], port[8];
    if (!ap_http_addr_split(cfg->http_addr, host, sizeof host, port, sizeof port)) {
        snprintf(err, errlen, "HTTP_ADDR: \"%s\" is not HOST:PORT (or [IPV6]:PORT)",
                 cfg->http_addr);
        goto out;
    }
    long wait_ms, retention;
    if (!number(&s, "HTTP_COMMAND_WAIT_MS", 0, 600000, 5000, &wait_ms, err, errlen) ||
        !number(&s, "COMMAND_OUTCOME_RETENTION_HOURS", 1, 87600, 24, &retention, err, errlen))
        goto out;
    cfg->http_command_wait_ms = (int)wait_ms;
    cfg->command_outcome_retention_hours = (int)retention;
    rc = collect_kafka(cfg, &s, err, errlen);

out:
    if (rc == AP_ERR_NOMEM)
        snprintf(err, errlen, "out of memory reading the configuration");
    settings_release(&s);
    if (rc)
        ap_config_release(cfg);
    return rc;
}

void ap_config_release(ap_config_t *cfg)
{
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        char **field = text_field(cfg, &texts[i]);
        if (texts[i].secret)
            ap_secret_free(*field); /* may hold a password */
        else
            free(*field);
    }
    for (size_t i = 0; i < cfg->ncommand_topics; i++)
        free(cfg->command_topics[i]);
    free(cfg->command_topics);
    for (size_t i = 0; i < cfg->nkafka; i++) {
        free(cfg->kafka[i].key);
        ap_secret_free(cfg->kafka[i].value); /* sasl.password, ssl.key.password, ... */
    }
    free(cfg->kafka);
    memset(cfg, 0, sizeof *cfg);
}
