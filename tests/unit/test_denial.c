/*
 * test_denial.c - ap/denial.h: libpq's messages sorted into refusals (authentication, TLS)
 * and plain unreachability; a report read back as one line with its cause; a clear forgets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "ap/denial.h"

static void test_libpq_messages_are_sorted(void **state)
{
    static const struct {
        const char *text;
        ap_denial_cause_t cause;
    } cases[] = {
        {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password "
         "authentication failed for user \"ap\"",
         AP_DENIAL_AUTHENTICATION},
        {"connection to server at \"db\" (10.0.0.5), port 5432 failed: FATAL:  no pg_hba.conf "
         "entry for host \"10.0.0.9\", user \"ap\", database \"x\", no encryption",
         AP_DENIAL_AUTHENTICATION},
        {"connection to server at \"db\", port 5432 failed: fe_sendauth: no password supplied",
         AP_DENIAL_AUTHENTICATION},
        {"connection to server at \"127.0.0.1\", port 5432 failed: SSL error: certificate "
         "verify failed",
         AP_DENIAL_TLS},
        {"connection to server at \"127.0.0.1\", port 5432 failed: server certificate for "
         "\"localhost\" does not match host name \"db\"",
         AP_DENIAL_TLS},
        {"root certificate file \"/nope/ca.pem\" does not exist\nEither provide the file or "
         "change sslmode to disable server certificate verification.",
         AP_DENIAL_TLS},
        {"connection to server at \"127.0.0.1\", port 5432 failed: server does not support SSL, "
         "but SSL was required",
         AP_DENIAL_TLS},
        {"connection to server at \"127.0.0.1\", port 5432 failed: Connection refused\n\tIs "
         "the server running on that host and accepting TCP/IP connections?",
         AP_DENIAL_NONE},
        {"server closed the connection unexpectedly", AP_DENIAL_NONE},
        {"connection to server at \"127.0.0.1\", port 5432 failed: SSL SYSCALL error: EOF "
         "detected",
         AP_DENIAL_NONE},
        {"connection to server at \"127.0.0.1\", port 5432 failed: SSL error: unexpected eof "
         "while reading",
         AP_DENIAL_NONE},
        {"", AP_DENIAL_NONE},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (ap_denial_classify_pg(cases[i].text) != cases[i].cause)
            fail_msg("case %zu: \"%s\"", i, cases[i].text);
    }
    assert_int_equal(ap_denial_classify_pg(NULL), AP_DENIAL_NONE);
}

static void test_report_get_clear(void **state)
{
    char reason[256];
    (void)state;

    assert_int_equal(ap_denial_get(AP_SERVICE_KAFKA, reason, sizeof reason), AP_DENIAL_NONE);
    ap_denial_report(AP_SERVICE_POSTGRES, AP_DENIAL_TLS,
                     "connection to server failed:\n  SSL error: certificate verify failed\n");
    assert_int_equal(ap_denial_get(AP_SERVICE_POSTGRES, reason, sizeof reason), AP_DENIAL_TLS);
    assert_string_equal(reason,
                        "TLS failed: connection to server failed: SSL error: certificate verify "
                        "failed");
    /* The other service is untouched; a NULL buffer only asks for the cause. */
    assert_int_equal(ap_denial_get(AP_SERVICE_KAFKA, NULL, 0), AP_DENIAL_NONE);
    ap_denial_report(AP_SERVICE_POSTGRES, AP_DENIAL_AUTHENTICATION, "password authentication failed");
    assert_int_equal(ap_denial_get(AP_SERVICE_POSTGRES, reason, sizeof reason),
                     AP_DENIAL_AUTHENTICATION);
    assert_string_equal(reason, "authentication failed: password authentication failed");
    ap_denial_clear(AP_SERVICE_POSTGRES);
    assert_int_equal(ap_denial_get(AP_SERVICE_POSTGRES, reason, sizeof reason), AP_DENIAL_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_libpq_messages_are_sorted),
        cmocka_unit_test(test_report_get_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
