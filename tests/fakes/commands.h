/*
 * commands.h - the unit tests' command builders: one line per command in a test, the
 * constructor's own checks asserted. Header-only (static inline), for files that include
 * cmocka.h first.
 */
#ifndef AP_TEST_COMMANDS_H
#define AP_TEST_COMMANDS_H

#include "ap/messages.h"

static inline ap_msg_t create_batch(const char *ref, const char *sku, int64_t qty)
{
    ap_msg_t msg;
    assert_int_equal(ap_msg_create_batch(&msg, ref, sku, qty, false, 0), AP_OK);
    return msg;
}

static inline ap_msg_t allocate(const char *orderid, const char *sku, int64_t qty)
{
    ap_msg_t msg;
    assert_int_equal(ap_msg_allocate(&msg, orderid, sku, qty), AP_OK);
    return msg;
}

static inline ap_msg_t change_qty(const char *ref, int64_t qty)
{
    ap_msg_t msg;
    assert_int_equal(ap_msg_change_batch_quantity(&msg, ref, qty), AP_OK);
    return msg;
}

#endif
