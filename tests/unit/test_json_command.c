/*
 * test_json_command.c - decoding commands typed as JSON (kcat's input).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ap/codec.h"

static ap_err_t decode(const char *text, ap_msg_t *cmd, char *why, size_t whylen)
{
    return ap_command_decode(NULL, text, strlen(text), AP_MSG_NONE, false, cmd, why, whylen);
}

static void test_create_batch_with_eta(void **state)
{
    ap_msg_t cmd;
    char why[256];
    int32_t days;
    (void)state;
    assert_int_equal(decode("{\"type\":\"CreateBatch\",\"ref\":\"b1\",\"sku\":\"RED-CHAIR\","
                            "\"qty\":100,\"eta\":\"2026-12-01\"}",
                            &cmd, why, sizeof why),
                     AP_OK);
    assert_int_equal(cmd.type, AP_CMD_CREATE_BATCH);
    assert_string_equal(cmd.ref, "b1");
    assert_string_equal(cmd.sku, "RED-CHAIR");
    assert_int_equal(cmd.qty, 100);
    assert_true(cmd.has_eta);
    assert_true(ap_date_parse("2026-12-01", 10, &days));
    assert_int_equal(cmd.eta, days);
}

static void test_null_or_absent_eta_means_in_warehouse(void **state)
{
    ap_msg_t cmd;
    (void)state;
    assert_int_equal(decode("{\"type\":\"create_batch\",\"ref\":\"b\",\"sku\":\"S\",\"qty\":1,"
                            "\"eta\":null}",
                            &cmd, NULL, 0),
                     AP_OK);
    assert_false(cmd.has_eta);
    assert_int_equal(decode("{\"type\":\"CreateBatch\",\"ref\":\"b\",\"sku\":\"S\",\"qty\":1}",
                            &cmd, NULL, 0),
                     AP_OK);
    assert_false(cmd.has_eta);
}

static void test_allocate_and_change_quantity_with_batchref_alias(void **state)
{
    ap_msg_t cmd;
    (void)state;
    assert_int_equal(decode(" {\"type\":\"Allocate\",\"orderid\":\"o1\",\"sku\":\"S\",\"qty\":10,"
                            "\"extra\":[1,2]}",
                            &cmd, NULL, 0),
                     AP_OK);
    assert_int_equal(cmd.type, AP_CMD_ALLOCATE);
    assert_string_equal(cmd.orderid, "o1");
    assert_int_equal(cmd.qty, 10);

    assert_int_equal(decode("{\"type\":\"ChangeBatchQuantity\",\"batchref\":\"b9\",\"qty\":0}",
                            &cmd, NULL, 0),
                     AP_OK);
    assert_int_equal(cmd.type, AP_CMD_CHANGE_BATCH_QUANTITY);
    assert_string_equal(cmd.ref, "b9");
    assert_int_equal(cmd.qty, 0);
}

static void test_type_from_hint(void **state)
{
    ap_msg_t cmd;
    const char *body = "{\"type\":\"Allocate\",\"orderid\":\"o\",\"sku\":\"S\",\"ref\":\"r\",\"qty\":3}";
    const char *untyped = "{\"ref\":\"r\",\"qty\":3}";
    (void)state;
    /* A header overrides the body's type; a topic's type only fills in a missing one. */
    assert_int_equal(ap_command_decode(NULL, body, strlen(body), AP_CMD_CHANGE_BATCH_QUANTITY,
                                       true, &cmd, NULL, 0),
                     AP_OK);
    assert_int_equal(cmd.type, AP_CMD_CHANGE_BATCH_QUANTITY);
    assert_int_equal(ap_command_decode(NULL, body, strlen(body), AP_CMD_CHANGE_BATCH_QUANTITY,
                                       false, &cmd, NULL, 0),
                     AP_OK);
    assert_int_equal(cmd.type, AP_CMD_ALLOCATE);
    assert_int_equal(ap_command_decode(NULL, untyped, strlen(untyped),
                                       AP_CMD_CHANGE_BATCH_QUANTITY, false, &cmd, NULL, 0),
                     AP_OK);
    assert_int_equal(cmd.type, AP_CMD_CHANGE_BATCH_QUANTITY);
}

static void test_undecodable_inputs(void **state)
{
    static const char *const inputs[] = {
        "",
        "not json",
        "{\"type\":\"Allocate\"",
        "[1,2,3]",
        "{\"type\":\"Teleport\",\"sku\":\"S\"}",
        "{\"sku\":\"S\",\"qty\":1}",
        "{\"type\":\"Allocated\",\"orderid\":\"o\",\"sku\":\"S\",\"qty\":1}",
        "{\"type\":\"Allocate\",\"sku\":\"\xff\xfe\",\"orderid\":\"o\",\"qty\":1}",
        "\x01\x02",
    };
    ap_msg_t cmd;
    char why[256];
    (void)state;
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        why[0] = '\0';
        assert_int_equal(decode(inputs[i], &cmd, why, sizeof why), AP_ERR_DECODE);
        assert_true(strlen(why) > 0);
    }
}

static void test_wrong_field_types_are_invalid_commands(void **state)
{
    static const char *const inputs[] = {
        "{\"type\":\"Allocate\",\"orderid\":\"o\",\"sku\":\"S\",\"qty\":\"10\"}",
        "{\"type\":\"Allocate\",\"orderid\":\"o\",\"sku\":\"S\",\"qty\":1.5}",
        "{\"type\":\"Allocate\",\"orderid\":\"o\",\"sku\":7,\"qty\":1}",
        "{\"type\":\"Allocate\",\"orderid\":\"o\",\"sku\":\"S\"}",
        "{\"type\":\"CreateBatch\",\"ref\":\"b\",\"sku\":\"S\",\"qty\":1,\"eta\":\"2026-02-30\"}",
        "{\"type\":\"CreateBatch\",\"ref\":\"b\",\"sku\":\"S\",\"qty\":1,\"eta\":20261201}",
    };
    ap_msg_t cmd;
    char why[256];
    (void)state;
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        why[0] = '\0';
        assert_int_equal(decode(inputs[i], &cmd, why, sizeof why), AP_ERR_INVALID_COMMAND);
        assert_true(ap_msg_is_command(cmd.type));
        assert_true(strlen(why) > 0);
    }
}

static void test_strings_longer_than_255_bytes_are_refused(void **state)
{
    char text[600], sku[300];
    ap_msg_t cmd;
    (void)state;
    memset(sku, 'x', 256);
    sku[256] = '\0';
    snprintf(text, sizeof text, "{\"type\":\"Allocate\",\"orderid\":\"o\",\"sku\":\"%s\",\"qty\":1}",
             sku);
    assert_int_equal(decode(text, &cmd, NULL, 0), AP_ERR_INVALID_COMMAND);
    sku[255] = '\0';
    snprintf(text, sizeof text, "{\"type\":\"Allocate\",\"orderid\":\"o\",\"sku\":\"%s\",\"qty\":1}",
             sku);
    assert_int_equal(decode(text, &cmd, NULL, 0), AP_OK);
    assert_int_equal(strlen(cmd.sku), 255);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_batch_with_eta),
        cmocka_unit_test(test_null_or_absent_eta_means_in_warehouse),
        cmocka_unit_test(test_allocate_and_change_quantity_with_batchref_alias),
        cmocka_unit_test(test_type_from_hint),
        cmocka_unit_test(test_undecodable_inputs),
        cmocka_unit_test(test_wrong_field_types_are_invalid_commands),
        cmocka_unit_test(test_strings_longer_than_255_bytes_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
