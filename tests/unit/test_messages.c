/*
 * test_messages.c - the message module (messages.h) and the error table (error.h).
 *
 * Dates, type names, bounded strings, the message constructors and command validation as
 * docs/domain.md and the contract describe them. Pure functions: no app, no fakes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "commands.h"
#include "ap/error.h"
#include "ap/messages.h"

/* ---------------------------------------------------------------- helpers */

static bool parse(const char *text, int32_t *days)
{
    return ap_date_parse(text, strlen(text), days);
}

/* Parses a date that must be valid and returns its day number. */
static int32_t days_of(const char *text)
{
    int32_t days = INT32_MIN;
    assert_true(parse(text, &days));
    return days;
}

/* A date that must be refused, leaving the out-parameter alone. */
static void assert_bad_date(const char *text, size_t len)
{
    int32_t days = 4242;
    if (ap_date_parse(text, len, &days))
        fail_msg("\"%.*s\" (len %zu) was accepted as a date", (int)len, text, len);
    assert_int_equal(days, 4242);
}

/* Validation must refuse `msg` with AP_ERR_INVALID_COMMAND and a one-line reason. */
static void assert_invalid(const ap_msg_t *msg)
{
    char why[256];
    memset(why, 0, sizeof why);
    assert_int_equal(ap_command_validate(msg, why, sizeof why), AP_ERR_INVALID_COMMAND);
    assert_true(strlen(why) > 0);
    assert_null(strchr(why, '\n'));
    /* `why` is optional. */
    assert_int_equal(ap_command_validate(msg, NULL, 0), AP_ERR_INVALID_COMMAND);
}

static void assert_valid(const ap_msg_t *msg)
{
    char why[256] = "";
    ap_err_t err = ap_command_validate(msg, why, sizeof why);
    if (err != AP_OK)
        fail_msg("valid %s refused: %s (%s)", ap_msg_type_name(msg->type), ap_strerror(err), why);
    assert_int_equal(ap_command_validate(msg, NULL, 0), AP_OK);
}

/* ---------------------------------------------------------------- dates */

static void test_date_epoch_is_day_zero(void **state)
{
    (void)state;
    assert_int_equal(days_of("1970-01-01"), 0);
    assert_int_equal(days_of("1970-01-02"), 1);
    assert_int_equal(days_of("1970-02-01"), 31);
    assert_int_equal(days_of("1971-01-01"), 365);
}

static void test_date_before_1970_is_negative(void **state)
{
    (void)state;
    assert_true(days_of("1969-12-31") == -1);
    assert_true(days_of("1969-01-01") == -365);
    assert_true(days_of("1900-03-01") == -25508);
    assert_true(days_of("0001-01-01") == -719162);
}

static void test_date_valid_dates(void **state)
{
    (void)state;
    assert_int_equal(days_of("2024-12-01"), 20058);
    assert_int_equal(days_of("2000-03-01"), 11017);
    assert_int_equal(days_of("9999-12-31"), 2932896);
    assert_int_equal(days_of("2023-12-31") + 1, days_of("2024-01-01"));
    assert_int_equal(days_of("2023-04-30") + 1, days_of("2023-05-01"));
}

static void test_date_leap_years(void **state)
{
    (void)state;
    int32_t days;
    /* Divisible by 400: leap. */
    assert_int_equal(days_of("2000-02-29"), 11016);
    assert_int_equal(days_of("2000-02-29") + 1, days_of("2000-03-01"));
    /* Divisible by 4: leap. */
    assert_true(parse("2024-02-29", &days));
    assert_true(parse("1996-02-29", &days));
    assert_int_equal(days_of("2024-03-01") - days_of("2024-02-01"), 29);
    /* Divisible by 100 but not 400: not leap. */
    assert_bad_date("1900-02-29", 10);
    assert_bad_date("2100-02-29", 10);
    assert_int_equal(days_of("1900-03-01") - days_of("1900-02-28"), 1);
    /* Not divisible by 4: not leap. */
    assert_bad_date("2023-02-29", 10);
    assert_bad_date("2001-02-29", 10);
}

static void test_date_rejects_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",            "2020",        "2020-1-01",   "2020-01-1",   "20-01-01",
        "2020-01-011", "2020-01-01 ", " 2020-01-01", "abcd-01-01",  "2020-ab-01",
        "2020-01-ab",  "2020-0a-01",  "2020-01-0x",  "2020-13-01",  "2020-00-01",
        "2020-01-32",  "2020-01-00",  "2020-02-30",  "2021-02-29",  "2020-04-31",
        "2020-06-31",  "2020-09-31",  "2020-11-31",  "20200101",    "2020/01/01",
        "2020-01/01",  "2020.01.01",  "2020_01_01",  "0000-01-01",  "+020-01-01",
        "-001-01-01",  "2020--1-01",  "2020-+1-01",  "2020-1--01",  "01-01-2020",
        "2020-99-99",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_bad_date(bad[i], strlen(bad[i]));
}

static void test_date_reads_exactly_len_bytes(void **state)
{
    (void)state;
    int32_t days = 7;
    /* Only `len` bytes are read: a valid prefix of a longer buffer is a date. */
    assert_true(ap_date_parse("1970-01-02garbage", 10, &days));
    assert_int_equal(days, 1);
    /* Wrong lengths of a valid text are refused. */
    assert_bad_date("2020-01-01", 9);
    assert_bad_date("2020-01-01", 0);
    assert_bad_date("2020-01-011", 11);
    /* An embedded NUL is not a digit. */
    assert_bad_date("2020-01-0\0", 10);
}

static void test_date_format_known_values(void **state)
{
    (void)state;
    char out[AP_DATE_LEN + 1];
    ap_date_format(0, out);
    assert_string_equal(out, "1970-01-01");
    ap_date_format(-1, out);
    assert_string_equal(out, "1969-12-31");
    ap_date_format(11016, out);
    assert_string_equal(out, "2000-02-29");
    ap_date_format(-25508, out);
    assert_string_equal(out, "1900-03-01");
    ap_date_format(-719162, out);
    assert_string_equal(out, "0001-01-01");
    ap_date_format(2932896, out);
    assert_string_equal(out, "9999-12-31");
    ap_date_format(20058, out);
    assert_string_equal(out, "2024-12-01");
}

static void test_date_format_parse_round_trip(void **state)
{
    (void)state;
    char out[AP_DATE_LEN + 1];
    /* Every day in a range around the epoch and the leap days, then a sample of all years. */
    for (int32_t d = -800; d <= 12000; d++) {
        memset(out, 'x', sizeof out);
        ap_date_format(d, out);
        assert_int_equal(out[AP_DATE_LEN], '\0');
        assert_int_equal(strlen(out), AP_DATE_LEN);
        int32_t back = INT32_MIN;
        if (!ap_date_parse(out, AP_DATE_LEN, &back) || back != d)
            fail_msg("day %d formats as %s which parses back as %d", (int)d, out, (int)back);
    }
    for (int32_t d = -719162; d <= 2932896; d += 997) {
        ap_date_format(d, out);
        int32_t back = INT32_MIN;
        if (!ap_date_parse(out, AP_DATE_LEN, &back) || back != d)
            fail_msg("day %d formats as %s which parses back as %d", (int)d, out, (int)back);
    }
    /* And text -> days -> text. */
    static const char *const texts[] = {"0001-01-01", "1600-02-29", "1899-12-31", "1969-12-31",
                                        "1970-01-01", "2000-02-29", "2038-01-19", "9999-12-31"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        ap_date_format(days_of(texts[i]), out);
        assert_string_equal(out, texts[i]);
    }
}

/* ---------------------------------------------------------------- type names */

static void test_msg_type_parse_camel_case(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        ap_msg_type_t type;
    } cases[] = {
        {"CreateBatch", AP_CMD_CREATE_BATCH},
        {"Allocate", AP_CMD_ALLOCATE},
        {"ChangeBatchQuantity", AP_CMD_CHANGE_BATCH_QUANTITY},
        {"BatchCreated", AP_EVT_BATCH_CREATED},
        {"BatchQuantityChanged", AP_EVT_BATCH_QUANTITY_CHANGED},
        {"Allocated", AP_EVT_ALLOCATED},
        {"Deallocated", AP_EVT_DEALLOCATED},
        {"OutOfStock", AP_EVT_OUT_OF_STOCK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(ap_msg_type_parse(cases[i].name, strlen(cases[i].name)), cases[i].type);
}

static void test_msg_type_parse_snake_case(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        ap_msg_type_t type;
    } cases[] = {
        {"create_batch", AP_CMD_CREATE_BATCH},
        {"allocate", AP_CMD_ALLOCATE},
        {"change_batch_quantity", AP_CMD_CHANGE_BATCH_QUANTITY},
        {"batch_created", AP_EVT_BATCH_CREATED},
        {"batch_quantity_changed", AP_EVT_BATCH_QUANTITY_CHANGED},
        {"allocated", AP_EVT_ALLOCATED},
        {"deallocated", AP_EVT_DEALLOCATED},
        {"out_of_stock", AP_EVT_OUT_OF_STOCK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(ap_msg_type_parse(cases[i].name, strlen(cases[i].name)), cases[i].type);
}

static void test_msg_type_parse_unknown(void **state)
{
    (void)state;
    static const char *const unknown[] = {"",         "?",         "Allocat",   "Allocates",
                                          "Foo",      "create-batch", "CreateBatch ",
                                          " allocate", "allocate_", "Create_Batch"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        if (ap_msg_type_parse(unknown[i], strlen(unknown[i])) != AP_MSG_NONE)
            fail_msg("\"%s\" parsed as a message type", unknown[i]);
    /* Exactly `len` bytes are read. */
    assert_int_equal(ap_msg_type_parse("Allocatexyz", 8), AP_CMD_ALLOCATE);
    assert_int_equal(ap_msg_type_parse("Allocated", 8), AP_CMD_ALLOCATE);
    assert_int_equal(ap_msg_type_parse("Allocate", 7), AP_MSG_NONE);
    assert_int_equal(ap_msg_type_parse("Allocate", 0), AP_MSG_NONE);
}

static void test_msg_type_name_round_trip(void **state)
{
    (void)state;
    assert_string_equal(ap_msg_type_name(AP_CMD_CREATE_BATCH), "CreateBatch");
    assert_string_equal(ap_msg_type_name(AP_CMD_ALLOCATE), "Allocate");
    assert_string_equal(ap_msg_type_name(AP_CMD_CHANGE_BATCH_QUANTITY), "ChangeBatchQuantity");
    assert_string_equal(ap_msg_type_name(AP_EVT_BATCH_CREATED), "BatchCreated");
    assert_string_equal(ap_msg_type_name(AP_EVT_BATCH_QUANTITY_CHANGED), "BatchQuantityChanged");
    assert_string_equal(ap_msg_type_name(AP_EVT_ALLOCATED), "Allocated");
    assert_string_equal(ap_msg_type_name(AP_EVT_DEALLOCATED), "Deallocated");
    assert_string_equal(ap_msg_type_name(AP_EVT_OUT_OF_STOCK), "OutOfStock");
    assert_string_equal(ap_msg_type_name(AP_MSG__COUNT), "?");
    for (int t = AP_MSG_NONE + 1; t < AP_MSG__COUNT; t++) {
        const char *name = ap_msg_type_name((ap_msg_type_t)t);
        assert_int_equal(ap_msg_type_parse(name, strlen(name)), t);
    }
}

static void test_msg_is_command_or_event(void **state)
{
    (void)state;
    assert_true(ap_msg_is_command(AP_CMD_CREATE_BATCH));
    assert_true(ap_msg_is_command(AP_CMD_ALLOCATE));
    assert_true(ap_msg_is_command(AP_CMD_CHANGE_BATCH_QUANTITY));
    for (int t = AP_EVT_BATCH_CREATED; t <= AP_EVT_OUT_OF_STOCK; t++) {
        assert_false(ap_msg_is_command((ap_msg_type_t)t));
        assert_true(ap_msg_is_event((ap_msg_type_t)t));
    }
    for (int t = AP_CMD_CREATE_BATCH; t <= AP_CMD_CHANGE_BATCH_QUANTITY; t++)
        assert_false(ap_msg_is_event((ap_msg_type_t)t));
    assert_false(ap_msg_is_command(AP_MSG_NONE));
    assert_false(ap_msg_is_event(AP_MSG_NONE));
}

/* ---------------------------------------------------------------- bounded strings */

static void test_str_set_copies(void **state)
{
    (void)state;
    char dst[AP_STR_SIZE];
    memset(dst, 'x', sizeof dst);
    assert_true(ap_str_set(dst, "RED-CHAIRextra", 9));
    assert_string_equal(dst, "RED-CHAIR");
    assert_true(ap_str_set(dst, "", 0));
    assert_string_equal(dst, "");
}

static void test_str_set_255_bytes_fits(void **state)
{
    (void)state;
    char src[AP_STR_MAX + 1];
    char dst[AP_STR_SIZE];
    memset(src, 'a', sizeof src);
    memset(dst, 'x', sizeof dst);
    assert_true(ap_str_set(dst, src, AP_STR_MAX));
    assert_int_equal(strlen(dst), AP_STR_MAX);
    assert_memory_equal(dst, src, AP_STR_MAX);
}

static void test_str_set_256_bytes_refused(void **state)
{
    (void)state;
    char src[AP_STR_MAX + 1];
    char dst[AP_STR_SIZE];
    memset(src, 'a', sizeof src);
    memset(dst, 'x', sizeof dst);
    dst[AP_STR_MAX] = '\0';
    assert_false(ap_str_set(dst, src, AP_STR_MAX + 1));
    assert_string_equal(dst, "");
}

static void test_str_set_refuses_embedded_nul(void **state)
{
    (void)state;
    char dst[AP_STR_SIZE] = "previous";
    assert_false(ap_str_set(dst, "ab\0cd", 5));
    assert_string_equal(dst, "");
}

/* ---------------------------------------------------------------- constructors */

static void test_msg_constructors_fill_fields(void **state)
{
    (void)state;
    ap_msg_t msg;
    assert_int_equal(ap_msg_create_batch(&msg, "b1", "RED-CHAIR", 100, true, 20058), AP_OK);
    assert_int_equal(msg.type, AP_CMD_CREATE_BATCH);
    assert_string_equal(msg.ref, "b1");
    assert_string_equal(msg.sku, "RED-CHAIR");
    assert_int_equal(msg.qty, 100);
    assert_true(msg.has_eta);
    assert_int_equal(msg.eta, 20058);
    assert_string_equal(msg.orderid, "");
    assert_string_equal(msg.batchref, "");

    assert_int_equal(ap_msg_create_batch(&msg, "b2", "RED-CHAIR", 5, false, 0), AP_OK);
    assert_false(msg.has_eta);

    assert_int_equal(ap_msg_allocate(&msg, "o1", "RED-CHAIR", 10), AP_OK);
    assert_int_equal(msg.type, AP_CMD_ALLOCATE);
    assert_string_equal(msg.orderid, "o1");
    assert_string_equal(msg.sku, "RED-CHAIR");
    assert_int_equal(msg.qty, 10);
    assert_string_equal(msg.ref, "");
    assert_string_equal(msg.batchref, "");

    assert_int_equal(ap_msg_change_batch_quantity(&msg, "b1", 50), AP_OK);
    assert_int_equal(msg.type, AP_CMD_CHANGE_BATCH_QUANTITY);
    assert_string_equal(msg.ref, "b1");
    assert_int_equal(msg.qty, 50);
    assert_string_equal(msg.sku, "");
}

static void test_msg_constructors_refuse_long_strings(void **state)
{
    (void)state;
    char ok[AP_STR_MAX + 1];
    char longer[AP_STR_MAX + 2];
    memset(ok, 'k', AP_STR_MAX);
    ok[AP_STR_MAX] = '\0';
    memset(longer, 'l', AP_STR_MAX + 1);
    longer[AP_STR_MAX + 1] = '\0';
    ap_msg_t msg;

    assert_int_equal(ap_msg_create_batch(&msg, ok, ok, 1, false, 0), AP_OK);
    assert_int_equal(strlen(msg.ref), AP_STR_MAX);
    assert_int_equal(ap_msg_create_batch(&msg, longer, "sku", 1, false, 0),
                     AP_ERR_INVALID_COMMAND);
    assert_int_equal(ap_msg_create_batch(&msg, "ref", longer, 1, false, 0),
                     AP_ERR_INVALID_COMMAND);
    assert_int_equal(ap_msg_allocate(&msg, ok, ok, 1), AP_OK);
    assert_int_equal(ap_msg_allocate(&msg, longer, "sku", 1), AP_ERR_INVALID_COMMAND);
    assert_int_equal(ap_msg_allocate(&msg, "o1", longer, 1), AP_ERR_INVALID_COMMAND);
    assert_int_equal(ap_msg_change_batch_quantity(&msg, ok, 1), AP_OK);
    assert_int_equal(ap_msg_change_batch_quantity(&msg, longer, 1), AP_ERR_INVALID_COMMAND);
}

/* ---------------------------------------------------------------- validation */

static void test_validate_accepts_good_commands(void **state)
{
    (void)state;
    ap_msg_t msg = create_batch("b1", "RED-CHAIR", 100);
    assert_valid(&msg);
    assert_int_equal(ap_msg_create_batch(&msg, "b1", "RED-CHAIR", 100, true, 20058), AP_OK);
    assert_valid(&msg);
    msg = allocate("o1", "RED-CHAIR", 1);
    assert_valid(&msg);
    msg = change_qty("b1", 1);
    assert_valid(&msg);
}

static void test_validate_qty_zero_is_fine_for_batch_commands(void **state)
{
    (void)state;
    ap_msg_t msg = create_batch("b1", "RED-CHAIR", 0);
    assert_valid(&msg);
    msg = change_qty("b1", 0);
    assert_valid(&msg);
}

static void test_validate_create_batch_rejections(void **state)
{
    (void)state;
    ap_msg_t msg = create_batch("", "RED-CHAIR", 10);
    assert_invalid(&msg);
    msg = create_batch("b1", "", 10);
    assert_invalid(&msg);
    msg = create_batch("b1", "RED-CHAIR", -1);
    assert_invalid(&msg);
    msg = create_batch("b1", "RED-CHAIR", INT64_MIN);
    assert_invalid(&msg);
}

static void test_validate_allocate_rejections(void **state)
{
    (void)state;
    ap_msg_t msg = allocate("", "RED-CHAIR", 10);
    assert_invalid(&msg);
    msg = allocate("o1", "", 10);
    assert_invalid(&msg);
    msg = allocate("o1", "RED-CHAIR", 0);
    assert_invalid(&msg);
    msg = allocate("o1", "RED-CHAIR", -5);
    assert_invalid(&msg);
    msg = allocate("o1", "RED-CHAIR", INT64_MIN);
    assert_invalid(&msg);
}

static void test_validate_change_batch_quantity_rejections(void **state)
{
    (void)state;
    ap_msg_t msg = change_qty("", 10);
    assert_invalid(&msg);
    msg = change_qty("b1", -1);
    assert_invalid(&msg);
    msg = change_qty("b1", INT64_MIN);
    assert_invalid(&msg);
}

static void test_validate_rejects_unterminated_strings(void **state)
{
    (void)state;
    /* A field with no NUL in its AP_STR_SIZE bytes holds a string over AP_STR_MAX bytes
     * (docs/domain.md: rejected); a hand-built message must not slip through to strcmp. */
    ap_msg_t msg = create_batch("b1", "RED-CHAIR", 1);
    memset(msg.ref, 'r', sizeof msg.ref);
    assert_invalid(&msg);
    msg = create_batch("b1", "RED-CHAIR", 1);
    memset(msg.sku, 's', sizeof msg.sku);
    assert_invalid(&msg);
    msg = allocate("o1", "RED-CHAIR", 1);
    memset(msg.orderid, 'o', sizeof msg.orderid);
    assert_invalid(&msg);
    msg = allocate("o1", "RED-CHAIR", 1);
    memset(msg.sku, 's', sizeof msg.sku);
    assert_invalid(&msg);
    msg = change_qty("b1", 1);
    memset(msg.ref, 'r', sizeof msg.ref);
    assert_invalid(&msg);
}

static void test_validate_rejects_non_commands(void **state)
{
    (void)state;
    ap_msg_t msg;
    memset(&msg, 0, sizeof msg);
    msg.type = AP_MSG_NONE;
    assert_invalid(&msg);
    /* An event is not a command, even with every field filled in. */
    msg = allocate("o1", "RED-CHAIR", 1);
    assert_true(ap_str_set(msg.batchref, "b1", 2));
    msg.type = AP_EVT_ALLOCATED;
    assert_invalid(&msg);
}

/* ---------------------------------------------------------------- errors */

static void test_err_reason_strings(void **state)
{
    (void)state;
    assert_string_equal(ap_err_reason(AP_ERR_INVALID_COMMAND), "invalid_command");
    assert_string_equal(ap_err_reason(AP_ERR_INVALID_SKU), "invalid_sku");
    assert_string_equal(ap_err_reason(AP_ERR_UNKNOWN_BATCH), "unknown_batch");
    assert_string_equal(ap_err_reason(AP_ERR_BATCH_EXISTS), "batch_exists");
    assert_null(ap_err_reason(AP_OK));
    assert_null(ap_err_reason(AP_ERR_CONFLICT));
    assert_null(ap_err_reason(AP_ERR_NOT_FOUND));
    assert_null(ap_err_reason(AP_ERR_INTERNAL));
}

static void test_err_kinds(void **state)
{
    (void)state;
    assert_true(ap_err_is_rejection(AP_ERR_INVALID_COMMAND));
    assert_true(ap_err_is_rejection(AP_ERR_INVALID_SKU));
    assert_true(ap_err_is_rejection(AP_ERR_UNKNOWN_BATCH));
    assert_true(ap_err_is_rejection(AP_ERR_BATCH_EXISTS));
    assert_false(ap_err_is_rejection(AP_OK));
    assert_false(ap_err_is_rejection(AP_ERR_CONFLICT));
    assert_false(ap_err_is_rejection(AP_ERR_NOMEM));

    assert_true(ap_err_is_transient(AP_ERR_CONFLICT));
    assert_false(ap_err_is_transient(AP_OK));
    assert_false(ap_err_is_transient(AP_ERR_INVALID_SKU));
    assert_false(ap_err_is_transient(AP_ERR_BATCH_EXISTS));
    assert_false(ap_err_is_transient(AP_ERR_DECODE));
}

static void test_strerror_never_null(void **state)
{
    (void)state;
    for (int e = AP_OK; e <= AP_ERR__COUNT; e++) {
        const char *text = ap_strerror((ap_err_t)e);
        assert_non_null(text);
        if (e < AP_ERR__COUNT)
            assert_true(strlen(text) > 0);
    }
    assert_string_equal(ap_strerror(AP_OK), "success");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_date_epoch_is_day_zero),
        cmocka_unit_test(test_date_before_1970_is_negative),
        cmocka_unit_test(test_date_valid_dates),
        cmocka_unit_test(test_date_leap_years),
        cmocka_unit_test(test_date_rejects_malformed),
        cmocka_unit_test(test_date_reads_exactly_len_bytes),
        cmocka_unit_test(test_date_format_known_values),
        cmocka_unit_test(test_date_format_parse_round_trip),
        cmocka_unit_test(test_msg_type_parse_camel_case),
        cmocka_unit_test(test_msg_type_parse_snake_case),
        cmocka_unit_test(test_msg_type_parse_unknown),
        cmocka_unit_test(test_msg_type_name_round_trip),
        cmocka_unit_test(test_msg_is_command_or_event),
        cmocka_unit_test(test_str_set_copies),
        cmocka_unit_test(test_str_set_255_bytes_fits),
        cmocka_unit_test(test_str_set_256_bytes_refused),
        cmocka_unit_test(test_str_set_refuses_embedded_nul),
        cmocka_unit_test(test_msg_constructors_fill_fields),
        cmocka_unit_test(test_msg_constructors_refuse_long_strings),
        cmocka_unit_test(test_validate_accepts_good_commands),
        cmocka_unit_test(test_validate_qty_zero_is_fine_for_batch_commands),
        cmocka_unit_test(test_validate_create_batch_rejections),
        cmocka_unit_test(test_validate_allocate_rejections),
        cmocka_unit_test(test_validate_change_batch_quantity_rejections),
        cmocka_unit_test(test_validate_rejects_unterminated_strings),
        cmocka_unit_test(test_validate_rejects_non_commands),
        cmocka_unit_test(test_err_reason_strings),
        cmocka_unit_test(test_err_kinds),
        cmocka_unit_test(test_strerror_never_null),
    };
    return cmocka_run_group_tests_name("messages", tests, NULL, NULL);
}
