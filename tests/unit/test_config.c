/*
 * test_config.c - ap_config_load: the defaults, a config file under the environment (which
 * wins), and every bad value refused with AP_ERR_CONFIG and one line that starts with the
 * key it names, without repeating a secret. Files are scratch files of the test's own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ap/config.h"

#define ERR_SIZE 512

/* Loads from `env` (NULL-terminated "KEY=value" strings) and, if not NULL, `file`. */
static ap_err_t load(ap_config_t *cfg, const char *file, char *const *env, char *err)
{
    return ap_config_load(cfg, file, env, err, ERR_SIZE);
}

/* A scratch config file holding `text`; the caller unlinks `path`. */
static void write_file(char path[64], const char *text)
{
    snprintf(path, 64, "/tmp/ap-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* ---------------------------------------------------------------- defaults */

static void test_defaults(void **state)
{
    char *env[] = {"PATH=/usr/bin", "HOME=/nowhere", NULL}; /* not ours: ignored */
    ap_config_t cfg;
    char err[ERR_SIZE];
    (void)state;

    assert_int_equal(load(&cfg, NULL, env, err), AP_OK);
    assert_string_equal(cfg.database_url, AP_DEFAULT_DATABASE_URL);
    assert_string_equal(cfg.bootstrap_servers, "127.0.0.1:9092");
    assert_string_equal(cfg.group_id, "allocation-processor");
    assert_string_equal(cfg.topic_prefix, "allocation");
    assert_int_equal(cfg.ncommand_topics, 1);
    assert_string_equal(cfg.command_topics[0], "allocation.commands");
    assert_null(cfg.command_topics[1]);
    assert_int_equal(cfg.nkafka, 0);
    assert_int_equal(cfg.topic_partitions, 3);
    assert_int_equal(cfg.topic_replication_factor, -1);
    assert_string_equal(cfg.avro_wire_format, "single-object");
    assert_null(cfg.schema_registry_url);
    assert_string_equal(cfg.notify_to, "stock@made.com");
    assert_string_equal(cfg.notify_from, "allocations@example.com");
    assert_null(cfg.smtp_url);
    assert_null(cfg.smtp_username);
    assert_null(cfg.smtp_password);
    assert_int_equal(cfg.email_retry_max_ms, 60000);
    assert_string_equal(cfg.http_addr, "127.0.0.1:8080");
    assert_int_equal(cfg.log_level, AP_LOG_INFO);
    assert_false(cfg.log_json);
    assert_int_equal(cfg.batch_max_messages, 500);
    assert_int_equal(cfg.batch_max_wait_ms, 10);
    assert_int_equal(cfg.backpressure_max_rows, 100000);
    assert_int_equal(cfg.backpressure_max_age_ms, 30000);
    assert_int_equal(cfg.product_cache_bytes, (size_t)16 * 1024 * 1024);
    assert_int_equal(cfg.consumer_threads, 1);
    ap_config_release(&cfg);
}

/* An empty value is no value: the default stands. */
static void test_empty_values_keep_the_defaults(void **state)
{
    char *env[] = {"TOPIC_PREFIX=", "KAFKA_GROUP_ID=", "BATCH_MAX_MESSAGES=", NULL};
    ap_config_t cfg;
    char err[ERR_SIZE];
    (void)state;

    assert_int_equal(load(&cfg, NULL, env, err), AP_OK);
    assert_string_equal(cfg.topic_prefix, "allocation");
    assert_string_equal(cfg.group_id, "allocation-processor");
    assert_int_equal(cfg.batch_max_messages, 500);
    ap_config_release(&cfg);
}

/* ---------------------------------------------------------------- file and environment */

static void test_environment_wins_over_the_file(void **state)
{
    char path[64];
    char *env[] = {"TOPIC_PREFIX=from-env", "BATCH_MAX_MESSAGES=7", "CONSUMER_THREADS=3", NULL};
    ap_config_t cfg;
    char err[ERR_SIZE];
    (void)state;

    write_file(path, "# a comment, then a blank line\n"
                     "\n"
                     "TOPIC_PREFIX=from-file\n"
                     "export KAFKA_GROUP_ID = \"quoted-group\"\n"
                     "COMMAND_TOPICS='a.commands, b.commands'\n"
                     "BATCH_MAX_MESSAGES=3\n"
                     "LOG_FORMAT=json\n"
                     "KAFKA_SOCKET_TIMEOUT_MS=45000\n");
    ap_err_t rc = load(&cfg, path, env, err);
    unlink(path);
    assert_int_equal(rc, AP_OK);
    assert_string_equal(cfg.topic_prefix, "from-env");
    assert_int_equal(cfg.batch_max_messages, 7);
    assert_int_equal(cfg.consumer_threads, 3);
    assert_string_equal(cfg.group_id, "quoted-group");
    assert_int_equal(cfg.ncommand_topics, 2);
    assert_string_equal(cfg.command_topics[0], "a.commands");
    assert_string_equal(cfg.command_topics[1], "b.commands");
    assert_true(cfg.log_json);
    /* Any other KAFKA_<NAME> is a librdkafka property. */
    assert_int_equal(cfg.nkafka, 1);
    assert_string_equal(cfg.kafka[0].key, "socket.timeout.ms");
    assert_string_equal(cfg.kafka[0].value, "45000");
    ap_config_release(&cfg);
}

/* The default command topic follows the prefix, wherever the prefix came from. */
static void test_default_command_topic_follows_the_prefix(void **state)
{
    char *env[] = {"TOPIC_PREFIX=shop", NULL};
    ap_config_t cfg;
    char err[ERR_SIZE];
    (void)state;

    assert_int_equal(load(&cfg, NULL, env, err), AP_OK);
    assert_string_equal(cfg.command_topics[0], "shop.commands");
    ap_config_release(&cfg);
}

static void test_bad_files(void **state)
{
    static const struct {
        const char *text, *says;
    } cases[] = {
        {"TOPIC_PREFIX\n", "line 1: expected KEY=value"},
        {"# fine\nPATH=/usr/bin\n", "line 2: unknown key PATH"},
    };
    char *env[] = {NULL};
    ap_config_t cfg;
    char err[ERR_SIZE], path[64];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_file(path, cases[i].text);
        ap_err_t rc = load(&cfg, path, env, err);
        unlink(path);
        assert_int_equal(rc, AP_ERR_CONFIG);
        assert_non_null(strstr(err, cases[i].says));
        assert_non_null(strstr(err, path));
        assert_null(strchr(err, '\n'));
    }
    assert_int_equal(load(&cfg, "/nonexistent/ap.conf", env, err), AP_ERR_CONFIG);
    assert_non_null(strstr(err, "config file /nonexistent/ap.conf: "));
}

/* ---------------------------------------------------------------- bad values */

static void test_every_bad_value_is_named(void **state)
{
    /* The setting, and the key its one-line error must start with. */
    static const struct {
        const char *setting, *other, *key;
    } cases[] = {
        {"DATABASE_URL=nosuchoption=1", NULL, "DATABASE_URL: "},
        {"TOPIC_PREFIX=bad prefix", NULL, "TOPIC_PREFIX: "},
        {"COMMAND_TOPICS=a.commands,bad topic", NULL, "COMMAND_TOPICS: "},
        {"COMMAND_TOPICS=,", NULL, "COMMAND_TOPICS: "},
        {"TOPIC_PARTITIONS=0", NULL, "TOPIC_PARTITIONS: "},
        {"TOPIC_PARTITIONS=three", NULL, "TOPIC_PARTITIONS: "},
        {"TOPIC_REPLICATION_FACTOR=-2", NULL, "TOPIC_REPLICATION_FACTOR: "},
        {"AVRO_WIRE_FORMAT=xml", NULL, "AVRO_WIRE_FORMAT: "},
        {"AVRO_WIRE_FORMAT=confluent", NULL, "SCHEMA_REGISTRY_URL: "},
        {"LOG_LEVEL=loud", NULL, "LOG_LEVEL: "},
        {"LOG_FORMAT=xml", NULL, "LOG_FORMAT: "},
        {"BATCH_MAX_MESSAGES=0", NULL, "BATCH_MAX_MESSAGES: "},
        {"BATCH_MAX_MESSAGES=100001", NULL, "BATCH_MAX_MESSAGES: "},
        {"BATCH_MAX_WAIT_MS=-1", NULL, "BATCH_MAX_WAIT_MS: "},
        {"BACKPRESSURE_MAX_ROWS=0", NULL, "BACKPRESSURE_MAX_ROWS: "},
        {"BACKPRESSURE_MAX_AGE_MS=soon", NULL, "BACKPRESSURE_MAX_AGE_MS: "},
        {"PRODUCT_CACHE_MB=-1", NULL, "PRODUCT_CACHE_MB: "},
        {"CONSUMER_THREADS=0", NULL, "CONSUMER_THREADS: "},
        {"CONSUMER_THREADS=65", NULL, "CONSUMER_THREADS: "},
        {"NOTIFY_EMAIL_TO=nobody", NULL, "NOTIFY_EMAIL_TO: "},
        {"NOTIFY_EMAIL_FROM=a b@example.com", NULL, "NOTIFY_EMAIL_FROM: "},
        {"SMTP_URL=http://mail.example.com", NULL, "SMTP_URL: "},
        {"SMTP_PASSWORD=x", "SMTP_PASSWORD_FILE=/nonexistent", "SMTP_PASSWORD and "},
        {"SMTP_PASSWORD_FILE=/nonexistent/secret", NULL, "SMTP_PASSWORD_FILE: "},
        {"EMAIL_RETRY_MAX_MS=5", NULL, "EMAIL_RETRY_MAX_MS: "},
        {"KAFKA_SOCKET_TIMEOUT_MS=never", NULL, "KAFKA_SOCKET_TIMEOUT_MS: "},
        {"KAFKA_NO_SUCH_PROPERTY=1", NULL, "KAFKA_NO_SUCH_PROPERTY: "},
        {"DATABASE_URL=x", "DATABASE_URL_FILE=/nonexistent", "DATABASE_URL and "},
        {"DATABASE_URL_FILE=/nonexistent/secret", NULL, "DATABASE_URL_FILE: "},
        {"KAFKA_SASL_PASSWORD=x", "KAFKA_SASL_PASSWORD_FILE=/x", "KAFKA_SASL_PASSWORD and "},
        {"KAFKA_SASL_PASSWORD_FILE=/nonexistent/secret", NULL, "KAFKA_SASL_PASSWORD_FILE: "},
        {"HTTP_AUTH_TOKEN_FILE=/nonexistent/secret", NULL, "HTTP_AUTH_TOKEN_FILE: "},
        {"SMTP_URL_FILE=/nonexistent/secret", NULL, "SMTP_URL_FILE: "},
        {"SMTP_USERNAME_FILE=/nonexistent/secret", NULL, "SMTP_USERNAME_FILE: "},
    };
    ap_config_t cfg;
    char err[ERR_SIZE];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *env[] = {(char *)cases[i].setting, (char *)cases[i].other, NULL};
        ap_err_t rc = load(&cfg, NULL, env, err);
        if (rc != AP_ERR_CONFIG || strncmp(err, cases[i].key, strlen(cases[i].key)) != 0 ||
            strchr(err, '\n'))
            fail_msg("%s: got %d, \"%s\"", cases[i].setting, (int)rc, err);
    }
}

/* A refused setting that may hold a password is named, never repeated. */
static void test_errors_never_repeat_a_secret(void **state)
{
    char *env[] = {"SMTP_URL=http://user:hunter2@mail.example.com", NULL};
    ap_config_t cfg;
    char err[ERR_SIZE];
    (void)state;

    assert_int_equal(load(&cfg, NULL, env, err), AP_ERR_CONFIG);
    assert_non_null(strstr(err, "SMTP_URL"));
    assert_null(strstr(err, "hunter2"));

    /* librdkafka repeats a refused value of a property that takes one of a list. */
    char *kafka[] = {"KAFKA_SECURITY_PROTOCOL=hunter2", NULL};
    assert_int_equal(load(&cfg, NULL, kafka, err), AP_ERR_CONFIG);
    assert_true(strncmp(err, "KAFKA_SECURITY_PROTOCOL: ", 25) == 0);
    assert_null(strstr(err, "hunter2"));
}

/* A Secret mount: the file's contents, a trailing line end dropped, never the path's name. */
static void test_secrets_from_files(void **state)
{
    static const struct {
        const char *key, *contents;
    } files[] = {
        {"DATABASE_URL_FILE", "postgresql://ap:db-pass-1@127.0.0.1:5432/allocation\n"},
        {"KAFKA_SASL_PASSWORD_FILE", "sasl-pass-2\r\n"},
        {"HTTP_AUTH_TOKEN_FILE", "token-3"},
        {"SMTP_URL_FILE", "smtps://mail.example.com:465\n"},
        {"SMTP_USERNAME_FILE", "mailer\n"},
        {"SMTP_PASSWORD_FILE", "smtp-pass-4\n"},
    };
    enum { N = sizeof files / sizeof *files };
    char paths[N][64], settings[N][128];
    char *env[N + 3];
    ap_config_t cfg;
    char err[ERR_SIZE];
    (void)state;

    for (size_t i = 0; i < N; i++) {
        write_file(paths[i], files[i].contents);
        snprintf(settings[i], sizeof settings[i], "%s=%s", files[i].key, paths[i]);
        env[i] = settings[i];
    }
    env[N] = "KAFKA_SASL_USERNAME=processor";
    env[N + 1] = "KAFKA_SECURITY_PROTOCOL=SASL_SSL";
    env[N + 2] = NULL;
    ap_err_t rc = load(&cfg, NULL, env, err);
    for (size_t i = 0; i < N; i++)
        unlink(paths[i]);
    if (rc != AP_OK)
        fail_msg("load: %s", err);

    assert_string_equal(cfg.database_url, "postgresql://ap:db-pass-1@127.0.0.1:5432/allocation");
    assert_string_equal(cfg.http_auth_token, "token-3");
    assert_string_equal(cfg.smtp_url, "smtps://mail.example.com:465");
    assert_string_equal(cfg.smtp_username, "mailer");
    assert_string_equal(cfg.smtp_password, "smtp-pass-4");
    bool password = false, protocol = false;
    for (size_t i = 0; i < cfg.nkafka; i++) {
        assert_null(strstr(cfg.kafka[i].key, "file")); /* no "sasl.password.file" */
        if (strcmp(cfg.kafka[i].key, "sasl.password") == 0) {
            assert_string_equal(cfg.kafka[i].value, "sasl-pass-2");
            password = true;
        }
        if (strcmp(cfg.kafka[i].key, "security.protocol") == 0) {
            assert_string_equal(cfg.kafka[i].value, "SASL_SSL");
            protocol = true;
        }
    }
    assert_true(password && protocol);
    assert_int_equal(cfg.nkafka, 3);
    ap_config_release(&cfg);
}

/* The same keys in a --config file, and a file that is empty: an error naming the key. */
static void test_secret_files_from_a_config_file(void **state)
{
    char secret_path[64], empty_path[64], conf_path[64], text[256];
    ap_config_t cfg;
    char err[ERR_SIZE];
    (void)state;

    write_file(secret_path, "postgresql://ap:db-pass-5@db/allocation");
    write_file(empty_path, "");
    snprintf(text, sizeof text, "DATABASE_URL_FILE=%s\n", secret_path);
    write_file(conf_path, text);
    char *env[] = {NULL};
    assert_int_equal(load(&cfg, conf_path, env, err), AP_OK);
    assert_string_equal(cfg.database_url, "postgresql://ap:db-pass-5@db/allocation");
    ap_config_release(&cfg);

    char setting[128];
    snprintf(setting, sizeof setting, "KAFKA_SASL_PASSWORD_FILE=%s", empty_path);
    char *env_empty[] = {setting, NULL};
    assert_int_equal(load(&cfg, NULL, env_empty, err), AP_ERR_CONFIG);
    assert_non_null(strstr(err, "KAFKA_SASL_PASSWORD_FILE: "));
    assert_non_null(strstr(err, "is empty"));
    unlink(secret_path);
    unlink(empty_path);
    unlink(conf_path);
}

/* libpq quotes the part of a connection string it cannot read: that part is not repeated. */
static void test_bad_database_url_hides_the_password(void **state)
{
    char *env[] = {"DATABASE_URL=postgresql://ap:hunter2%zz@db/allocation", NULL};
    ap_config_t cfg;
    char err[ERR_SIZE];
    (void)state;

    assert_int_equal(load(&cfg, NULL, env, err), AP_ERR_CONFIG);
    assert_true(strncmp(err, "DATABASE_URL: ", 14) == 0);
    assert_null(strstr(err, "hunter2"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_empty_values_keep_the_defaults),
        cmocka_unit_test(test_environment_wins_over_the_file),
        cmocka_unit_test(test_default_command_topic_follows_the_prefix),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_every_bad_value_is_named),
        cmocka_unit_test(test_errors_never_repeat_a_secret),
        cmocka_unit_test(test_secrets_from_files),
        cmocka_unit_test(test_secret_files_from_a_config_file),
        cmocka_unit_test(test_bad_database_url_hides_the_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
