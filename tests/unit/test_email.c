/*
 * test_email.c - the out-of-stock email: the handler writes one email row in the command's
 * own scope (through the email outbox's fake, tests/fakes/), so a command retried or failed
 * leaves exactly what it committed; the message text (Message-ID, headers, encoding) as the
 * SMTP adapter builds it; and the email settings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "ap/bootstrap.h"
#include "ap/bus.h"
#include "ap/config.h"
#include "ap/email.h"
#include "ap/messages.h"
#include "fakes.h"

/* ---------------------------------------------------------------- fixture */

/*
 * A publisher that fails the OutOfStock publications numbered `from` (1-based, counted over
 * the whole test) onwards, `count` of them, with `err`; the others are recorded.
 */
/* An app around the fake uow and the fake email outbox writing into it. */
static ap_app_t *new_app(ap_publisher_t *publisher, const char *notify_to)
{
    ap_app_t *app = calloc(1, sizeof *app);
    assert_non_null(app);
    ap_uow_t *uow = ap_fake_uow_new();
    ap_err_t err = ap_bootstrap(app, uow, publisher ? publisher : ap_fake_publisher_new(),
                                ap_fake_email_outbox_new(uow), ap_fake_clock_new(), notify_to);
    if (err)
        fail_msg("ap_bootstrap: %s", ap_strerror(err));
    return app;
}

static void free_app(ap_app_t *app)
{
    ap_app_release(app);
    free(app);
}

#define UOW(app) ((app)->deps.uow)

static ap_err_t run(ap_app_t *app, ap_msg_t cmd)
{
    char why[512] = "";
    return ap_bus_execute(&app->bus, &cmd, why, sizeof why);
}

static size_t emails(ap_app_t *app)
{
    return ap_fake_uow_email_count(UOW(app));
}

/* ---------------------------------------------------------------- the handler */

static void test_out_of_stock_writes_one_email_row(void **state)
{
    (void)state;
    ap_app_t *app = new_app(NULL, NULL);
    const char *to = NULL, *subject = NULL;

    assert_int_equal(run(app, create_batch("batch1", "POPULAR-CURTAINS", 9)), AP_OK);
    assert_int_equal(run(app, allocate("order1", "POPULAR-CURTAINS", 10)), AP_OK);

    assert_int_equal(emails(app), 1);
    const char *body = ap_fake_uow_email(UOW(app), 0, &to, &subject);
    assert_string_equal(to, "stock@made.com");
    assert_string_equal(subject, "Out of stock: POPULAR-CURTAINS");
    assert_string_equal(body, "Out of stock for POPULAR-CURTAINS");
    /* Committed: the email row is in storage, not only in an open scope. */
    assert_int_equal(UOW(app)->depth, 0);
    free_app(app);
}

/* The email names the OutOfStock event it is about: the id the event carries to Kafka. */
static void test_email_carries_the_out_of_stock_events_id(void **state)
{
    (void)state;
    ap_publisher_t *pub = ap_fake_publisher_new();
    ap_app_t *app = new_app(pub, NULL);

    assert_int_equal(run(app, create_batch("batch1", "POPULAR-CURTAINS", 9)), AP_OK);
    assert_int_equal(run(app, allocate("order1", "POPULAR-CURTAINS", 10)), AP_OK);
    assert_int_equal(run(app, allocate("order2", "POPULAR-CURTAINS", 10)), AP_OK);

    assert_int_equal(emails(app), 2);
    const char *out_of_stock[2] = {NULL, NULL};
    size_t n = 0;
    for (size_t i = 0; i < ap_fake_publisher_count(pub); i++) {
        const ap_msg_t *event = ap_fake_publisher_event(pub, i);
        assert_int_equal(strlen(event->meta.event_id), 36); /* every event has its own */
        if (event->type == AP_EVT_OUT_OF_STOCK && n < 2)
            out_of_stock[n++] = event->meta.event_id;
    }
    assert_int_equal(n, 2);
    assert_string_equal(ap_fake_uow_email_event_id(UOW(app), 0), out_of_stock[0]);
    assert_string_equal(ap_fake_uow_email_event_id(UOW(app), 1), out_of_stock[1]);
    assert_string_not_equal(out_of_stock[0], out_of_stock[1]);
    assert_int_equal(out_of_stock[0][14], '4'); /* a version-4 UUID */
    free_app(app);
}

static void test_email_goes_to_the_configured_address(void **state)
{
    (void)state;
    ap_app_t *app = new_app(NULL, "buyers@example.com");
    const char *to = NULL;
    assert_int_equal(run(app, create_batch("b1", "RARE-VASE", 1)), AP_OK);
    assert_int_equal(run(app, allocate("o1", "RARE-VASE", 2)), AP_OK);
    assert_int_equal(emails(app), 1);
    (void)ap_fake_uow_email(UOW(app), 0, &to, NULL);
    assert_string_equal(to, "buyers@example.com");
    free_app(app);
}

static void test_no_email_without_out_of_stock(void **state)
{
    (void)state;
    ap_app_t *app = new_app(NULL, NULL);
    assert_int_equal(run(app, create_batch("b1", "PLENTY-LAMP", 100)), AP_OK);
    assert_int_equal(run(app, allocate("o1", "PLENTY-LAMP", 10)), AP_OK);
    assert_int_equal(run(app, allocate("o2", "NO-SUCH-SKU", 10)), AP_ERR_INVALID_SKU);
    assert_int_equal(emails(app), 0);
    free_app(app);
}

/*
 * Two lines leave a shrinking batch and neither fits elsewhere: two OutOfStock events, two
 * emails. The second OutOfStock's publication conflicts once, after the first email was
 * written: the whole command is retried, and the first attempt's email goes with it.
 */
static ap_app_t *two_lines_then_shrink(ap_publisher_t *publisher, ap_err_t *err)
{
    ap_app_t *app = new_app(publisher, NULL);
    assert_int_equal(run(app, create_batch("b1", "SHRINKING-SOFA", 10)), AP_OK);
    assert_int_equal(run(app, allocate("o1", "SHRINKING-SOFA", 5)), AP_OK);
    assert_int_equal(run(app, allocate("o2", "SHRINKING-SOFA", 5)), AP_OK);
    assert_int_equal(emails(app), 0);
    *err = run(app, change_qty("b1", 0));
    return app;
}

static void test_retried_command_writes_its_emails_once(void **state)
{
    (void)state;
    ap_err_t err;
    ap_app_t *app = two_lines_then_shrink(
        ap_fake_flaky_publisher_new(AP_EVT_OUT_OF_STOCK, 2, 1, AP_ERR_CONFLICT), &err);
    assert_int_equal(err, AP_OK);
    assert_int_equal(app->bus.stats.retries, 1);
    assert_int_equal(emails(app), 2);
    for (size_t i = 0; i < 2; i++)
        assert_string_equal(ap_fake_uow_email(UOW(app), i, NULL, NULL),
                            "Out of stock for SHRINKING-SOFA");
    free_app(app);
}

static void test_failed_command_writes_no_email(void **state)
{
    (void)state;
    ap_err_t err;
    ap_app_t *app = two_lines_then_shrink(
        ap_fake_flaky_publisher_new(AP_EVT_OUT_OF_STOCK, 2, UINT_MAX, AP_ERR_CONFLICT), &err);
    assert_int_equal(err, AP_ERR_CONFLICT);
    assert_int_equal(emails(app), 0);
    free_app(app);
}

static void test_transaction_rolled_back_by_its_owner_writes_no_email(void **state)
{
    (void)state;
    ap_app_t *app = new_app(NULL, NULL);
    assert_int_equal(run(app, create_batch("b1", "LATE-CHAIR", 1)), AP_OK);
    /* The consumer's batch transaction: the command succeeds inside it, then the owner
     * rolls the whole batch back (as after a fenced offset or a lost connection). */
    assert_int_equal(ap_uow_begin(UOW(app)), AP_OK);
    assert_int_equal(run(app, allocate("o1", "LATE-CHAIR", 2)), AP_OK);
    assert_int_equal(emails(app), 1);
    ap_uow_rollback(UOW(app));
    assert_int_equal(emails(app), 0);
    free_app(app);
}

/* ---------------------------------------------------------------- the message */

#define EVENT_ID "0b7f6a57-3d1e-4c39-9f4e-2a8a1c6d5e40"

static void test_message_id_is_the_event_id_at_the_senders_domain(void **state)
{
    (void)state;
    char id[AP_EMAIL_MESSAGE_ID_SIZE], again[AP_EMAIL_MESSAGE_ID_SIZE];
    ap_email_message_id(EVENT_ID, "allocations@example.com", id);
    assert_string_equal(id, "<" EVENT_ID "@example.com>");
    ap_email_message_id(EVENT_ID, "allocations@example.com", again);
    assert_string_equal(id, again);

    ap_email_message_id(EVENT_ID, "no-domain", id);
    assert_string_equal(id, "<" EVENT_ID "@allocation-processor.invalid>");
    ap_email_message_id(EVENT_ID, "a@ex<am>ple.com\r\n", id);
    assert_string_equal(id, "<" EVENT_ID "@example.com>");
}

/* True when `text` has a line (CRLF-separated) starting with `prefix`. */
static bool has_line(const char *text, const char *prefix)
{
    for (const char *line = text; line && *line;) {
        if (strncmp(line, prefix, strlen(prefix)) == 0)
            return true;
        const char *end = strstr(line, "\r\n");
        line = end ? end + 2 : NULL;
    }
    return false;
}

static void test_format_has_the_headers_and_crlf_lines(void **state)
{
    (void)state;
    char *text = ap_email_format("allocations@example.com", "stock@made.com",
                                 "Out of stock: RED-CHAIR", "Out of stock for RED-CHAIR",
                                 "<" EVENT_ID "@example.com>", 0);
    assert_non_null(text);
    assert_true(has_line(text, "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
    assert_true(has_line(text, "From: allocations@example.com\r\n"));
    assert_true(has_line(text, "To: stock@made.com\r\n"));
    assert_true(has_line(text, "Subject: Out of stock: RED-CHAIR\r\n"));
    assert_true(has_line(text, "Message-ID: <" EVENT_ID "@example.com>\r\n"));
    assert_true(has_line(text, "Content-Type: text/plain; charset=UTF-8\r\n"));
    assert_non_null(strstr(text, "\r\n\r\nOut of stock for RED-CHAIR\r\n"));
    /* Every line ends in CRLF: no bare LF or CR anywhere. */
    for (const char *p = text; *p; p++) {
        if (*p == '\n')
            assert_true(p > text && p[-1] == '\r');
        if (*p == '\r')
            assert_true(p[1] == '\n');
    }
    assert_int_equal(text[strlen(text) - 1], '\n');
    free(text);
}

static void test_format_keeps_a_hostile_sku_out_of_the_headers(void **state)
{
    (void)state;
    char *text = ap_email_format("allocations@example.com", "stock@made.com",
                                 "Out of stock: X\r\nBcc: victim@example.org",
                                 "Out of stock for X\nline two\r\n.\r\nRSET", "<id@example.com>",
                                 1700000000);
    assert_non_null(text);
    assert_false(has_line(text, "Bcc:"));
    assert_true(has_line(text, "Subject: Out of stock: X  Bcc: victim@example.org\r\n"));
    /* The body's lines end in CRLF whatever they ended in (libcurl dot-stuffs "."). */
    assert_non_null(strstr(text, "\r\n\r\nOut of stock for X\r\nline two\r\n.\r\nRSET\r\n"));
    free(text);
}

static void test_format_encodes_a_non_ascii_subject(void **state)
{
    (void)state;
    /* "Out of stock: CHAISE-É" in UTF-8 is base64 "T3V0IG9mIHN0b2NrOiBDSEFJU0Ut w4k=". */
    char *text = ap_email_format("a@example.com", "b@example.com",
                                 "Out of stock: CHAISE-\xc3\x89", "body", "<id@example.com>", 0);
    assert_non_null(text);
    assert_true(has_line(text, "Subject: =?UTF-8?B?T3V0IG9mIHN0b2NrOiBDSEFJU0Utw4k=?=\r\n"));
    free(text);

    /* A long one is folded into several words, never splitting a character. */
    char subject[200] = "";
    for (int i = 0; i < 40; i++)
        strcat(subject, "\xc3\xa9");
    text = ap_email_format("a@example.com", "b@example.com", subject, "body", "<id@example.com>",
                           0);
    assert_non_null(text);
    assert_non_null(strstr(text, "?=\r\n =?UTF-8?B?"));
    free(text);
}

/* ---------------------------------------------------------------- settings */

static ap_err_t load(ap_config_t *cfg, char *const *env, char *err)
{
    return ap_config_load(cfg, NULL, env, err, 512);
}

static void test_config_defaults_and_secret_files(void **state)
{
    (void)state;
    ap_config_t cfg;
    char err[512], path[] = "/tmp/ap-test-email-XXXXXX", env_file[600];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "s3cret\n", 7), 7);
    close(fd);

    char *none[] = {NULL};
    assert_int_equal(load(&cfg, none, err), AP_OK);
    assert_null(cfg.smtp_url);
    assert_string_equal(cfg.notify_to, "stock@made.com");
    assert_string_equal(cfg.notify_from, "allocations@example.com");
    assert_int_equal(cfg.email_retry_max_ms, 60000);
    ap_config_release(&cfg);

    snprintf(env_file, sizeof env_file, "SMTP_PASSWORD_FILE=%s", path);
    char *env[] = {"SMTP_URL=smtps://mail.example.com:465", "SMTP_USERNAME=me", env_file,
                   "EMAIL_RETRY_MAX_MS=1000", NULL};
    assert_int_equal(load(&cfg, env, err), AP_OK);
    assert_string_equal(cfg.smtp_url, "smtps://mail.example.com:465");
    assert_string_equal(cfg.smtp_username, "me");
    assert_string_equal(cfg.smtp_password, "s3cret");
    assert_int_equal(cfg.email_retry_max_ms, 1000);
    ap_config_release(&cfg);

    /* Both ways at once is ambiguous, and the error names keys, not values. */
    char *both[] = {"SMTP_PASSWORD=other-secret", env_file, NULL};
    assert_int_equal(load(&cfg, both, err), AP_ERR_CONFIG);
    assert_non_null(strstr(err, "SMTP_PASSWORD_FILE"));
    assert_null(strstr(err, "other-secret"));
    assert_null(strstr(err, "s3cret"));
    unlink(path);
}

static void test_config_refuses_bad_email_settings(void **state)
{
    (void)state;
    ap_config_t cfg;
    char err[512];

    char *scheme[] = {"SMTP_URL=http://user:hunter2@mail.example.com", NULL};
    assert_int_equal(load(&cfg, scheme, err), AP_ERR_CONFIG);
    assert_non_null(strstr(err, "SMTP_URL"));
    assert_null(strstr(err, "hunter2"));

    char *to[] = {"NOTIFY_EMAIL_TO=stock@made.com\r\nBcc: x@y", NULL};
    assert_int_equal(load(&cfg, to, err), AP_ERR_CONFIG);
    assert_non_null(strstr(err, "NOTIFY_EMAIL_TO"));

    char *from[] = {"NOTIFY_EMAIL_FROM=nobody", NULL};
    assert_int_equal(load(&cfg, from, err), AP_ERR_CONFIG);
    assert_non_null(strstr(err, "NOTIFY_EMAIL_FROM"));

    char *missing[] = {"SMTP_URL_FILE=/nonexistent/ap-smtp-url", NULL};
    assert_int_equal(load(&cfg, missing, err), AP_ERR_CONFIG);
    assert_non_null(strstr(err, "SMTP_URL_FILE"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_of_stock_writes_one_email_row),
        cmocka_unit_test(test_email_carries_the_out_of_stock_events_id),
        cmocka_unit_test(test_email_goes_to_the_configured_address),
        cmocka_unit_test(test_no_email_without_out_of_stock),
        cmocka_unit_test(test_retried_command_writes_its_emails_once),
        cmocka_unit_test(test_failed_command_writes_no_email),
        cmocka_unit_test(test_transaction_rolled_back_by_its_owner_writes_no_email),
        cmocka_unit_test(test_message_id_is_the_event_id_at_the_senders_domain),
        cmocka_unit_test(test_format_has_the_headers_and_crlf_lines),
        cmocka_unit_test(test_format_keeps_a_hostile_sku_out_of_the_headers),
        cmocka_unit_test(test_format_encodes_a_non_ascii_subject),
        cmocka_unit_test(test_config_defaults_and_secret_files),
        cmocka_unit_test(test_config_refuses_bad_email_settings),
    };
    return cmocka_run_group_tests_name("email", tests, NULL, NULL);
}
