/*
 * test_registry_apicurio.c - the schema-registry client (registry_client.c) and the Avro
 * codec's lookup against a real registry: Apicurio Registry's Confluent-compatible API
 * (/apis/ccompat/v7), which deploy/local/services.sh runs with compatibility BACKWARD and
 * passes as TEST_SCHEMA_REGISTRY_URL. Registration, lookup by id, refusals (an invalid
 * schema, an incompatible one), and a confluent-framed command decoded through the registry.
 * What only a test double can do (failures, hangs, counting requests) stays in
 * test_registry.c.
 *
 * Subjects carry the process id and the time, so runs against a registry left running never
 * meet each other's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ap/avro.h"
#include "ap/codec.h"
#include "ap/log.h"
#include "ap/registry.h"
#include "commands.h"

static const char *url;

static const char allocated_v1[] =
    "{\"type\":\"record\",\"name\":\"Allocated\",\"namespace\":\"t\",\"fields\":["
    "{\"name\":\"orderid\",\"type\":\"string\"},{\"name\":\"qty\",\"type\":\"long\"}]}";
/* v1 without qty, with a field no default fills: BACKWARD-incompatible. */
static const char allocated_v2[] =
    "{\"type\":\"record\",\"name\":\"Allocated\",\"namespace\":\"t\",\"fields\":["
    "{\"name\":\"orderid\",\"type\":\"string\"},{\"name\":\"batchref\",\"type\":\"string\"}]}";
static const char deallocated[] =
    "{\"type\":\"record\",\"name\":\"Deallocated\",\"namespace\":\"t\",\"fields\":["
    "{\"name\":\"orderid\",\"type\":\"string\"}]}";

/* A subject of this run: "<prefix>-<pid>-<time>-value". */
static void subject(char *out, size_t size, const char *prefix)
{
    snprintf(out, size, "%s-%ld-%lld-value", prefix, (long)getpid(), (long long)time(NULL));
}

static ap_registry_t *client(void)
{
    ap_registry_t *registry = NULL;
    assert_int_equal(ap_registry_new(url, &registry), AP_OK);
    return registry;
}

/* The schema's Parsing Canonical Form: equal for the same schema however it is written. */
static char *canonical(const char *schema)
{
    char *form = NULL;
    assert_int_equal(ap_avro_canonical_form(schema, &form), AP_OK);
    return form;
}

/* ---------------------------------------------------------------- tests */

static void test_register_then_fetch_by_id(void **state)
{
    char name[128], why[512] = "";
    int32_t id = -1, again = -1;
    char *fetched = NULL;
    (void)state;

    subject(name, sizeof name, "apicurio-allocated");
    ap_registry_t *registry = client();
    assert_int_equal(ap_registry_register(registry, name, allocated_v1, &id, why, sizeof why),
                     AP_OK);
    assert_true(id >= 0);

    /* Another client (no cache) gets the same id, and the same schema back by id. */
    ap_registry_t *other = client();
    assert_int_equal(ap_registry_register(other, name, allocated_v1, &again, why, sizeof why),
                     AP_OK);
    assert_int_equal(again, id);
    assert_int_equal(ap_registry_schema_by_id(other, id, &fetched), AP_OK);
    char *want = canonical(allocated_v1), *got = canonical(fetched);
    assert_string_equal(got, want);
    free(want);
    free(got);
    free(fetched);
    ap_registry_free(other);
    ap_registry_free(registry);
}

static void test_different_schemas_different_ids(void **state)
{
    char a[128], b[128], why[512] = "";
    int32_t id_a = -1, id_b = -1;
    (void)state;

    subject(a, sizeof a, "apicurio-a");
    subject(b, sizeof b, "apicurio-b/with?odd chars");
    ap_registry_t *registry = client();
    assert_int_equal(ap_registry_register(registry, a, allocated_v1, &id_a, why, sizeof why),
                     AP_OK);
    assert_int_equal(ap_registry_register(registry, b, deallocated, &id_b, why, sizeof why),
                     AP_OK);
    assert_int_not_equal(id_a, id_b);
    ap_registry_free(registry);
}

static void test_unknown_id_is_not_found(void **state)
{
    char *schema = NULL;
    (void)state;
    ap_registry_t *registry = client();
    assert_int_equal(ap_registry_schema_by_id(registry, INT32_MAX - 1, &schema),
                     AP_ERR_NOT_FOUND);
    assert_null(schema);
    ap_registry_free(registry);
}

/* A refusal is AP_ERR_CONFIG with the registry's own words and status, never a retry. */
static void test_refusals_are_config_errors_with_the_message(void **state)
{
    char name[128], why[512] = "";
    int32_t id = -1;
    (void)state;

    subject(name, sizeof name, "apicurio-refused");
    ap_registry_t *registry = client();
    assert_int_equal(ap_registry_register(registry, name, "{not a schema", &id, why, sizeof why),
                     AP_ERR_CONFIG);
    assert_non_null(strstr(why, "HTTP 422"));
    assert_int_equal(id, -1);

    why[0] = '\0';
    assert_int_equal(ap_registry_register(registry, name, allocated_v1, &id, why, sizeof why),
                     AP_OK);
    id = -1;
    assert_int_equal(ap_registry_register(registry, name, allocated_v2, &id, why, sizeof why),
                     AP_ERR_CONFIG);
    assert_non_null(strstr(why, "HTTP 409"));
    assert_non_null(strstr(why, "ncompatible"));
    assert_int_equal(id, -1);
    ap_registry_free(registry);
}

static ap_err_t lookup(void *ctx, int32_t id, char **schema_json)
{
    return ap_registry_schema_by_id(ctx, id, schema_json);
}

/* The processor's path: our Allocate schema registered, a command framed with its id, then
 * decoded by a codec that knows no id and asks the registry. */
static void test_confluent_command_decodes_through_the_registry(void **state)
{
    char name[128], why[512] = "";
    const char *full_name, *schema = NULL;
    int32_t id = -1;
    uint8_t *value = NULL;
    size_t len = 0;
    ap_avro_codec_t *writer = NULL, *reader = NULL;
    ap_msg_t cmd = allocate("apicurio-o1", "RED-CHAIR", 3), back;
    (void)state;

    assert_int_equal(ap_avro_codec_new(AP_WIRE_CONFLUENT, &writer), AP_OK);
    for (size_t i = 0; ap_avro_schema_at(writer, i, &full_name, &schema); i++) {
        if (strcmp(full_name, "com.made.allocation.commands.Allocate") == 0)
            break;
    }
    assert_non_null(schema);
    subject(name, sizeof name, "apicurio-commands");
    ap_registry_t *registry = client();
    assert_int_equal(ap_registry_register(registry, name, schema, &id, why, sizeof why), AP_OK);
    assert_int_equal(ap_avro_codec_set_schema_id(writer, "com.made.allocation.commands.Allocate",
                                                 id),
                     AP_OK);
    assert_int_equal(ap_avro_encode_command(writer, &cmd, &value, &len), AP_OK);
    assert_int_equal(value[0], 0x00);

    ap_registry_t *fresh = client();
    assert_int_equal(ap_avro_codec_new(AP_WIRE_CONFLUENT, &reader), AP_OK);
    ap_avro_codec_set_lookup(reader, lookup, fresh);
    assert_int_equal(ap_command_decode(reader, value, len, AP_MSG_NONE, false, &back, why,
                                       sizeof why),
                     AP_OK);
    assert_int_equal(back.type, AP_CMD_ALLOCATE);
    assert_string_equal(back.orderid, "apicurio-o1");
    assert_string_equal(back.sku, "RED-CHAIR");
    assert_int_equal(back.qty, 3);

    free(value);
    ap_avro_codec_free(reader);
    ap_avro_codec_free(writer);
    ap_registry_free(fresh);
    ap_registry_free(registry);
}

/* ---------------------------------------------------------------- main */

int main(void)
{
    ap_log_setup(AP_LOG_WARN, false);
    url = getenv("TEST_SCHEMA_REGISTRY_URL");
    if (!url || !*url) {
        fprintf(stderr, "test_registry_apicurio: TEST_SCHEMA_REGISTRY_URL is not set (a real "
                        "registry: deploy/local/services.sh start registry, then its env)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_then_fetch_by_id),
        cmocka_unit_test(test_different_schemas_different_ids),
        cmocka_unit_test(test_unknown_id_is_not_found),
        cmocka_unit_test(test_refusals_are_config_errors_with_the_message),
        cmocka_unit_test(test_confluent_command_decodes_through_the_registry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
