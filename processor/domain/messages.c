/*
 * messages.c - names, validation and dates for commands and events.
 *
 * Pure functions over fixed-size values: nothing here allocates or does I/O.
 */
#include "ap/messages.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *camel;
    const char *snake;
} type_names[AP_MSG__COUNT] = {
    [AP_MSG_NONE] = {"?", "?"},
    [AP_CMD_CREATE_BATCH] = {"CreateBatch", "create_batch"},
    [AP_CMD_ALLOCATE] = {"Allocate", "allocate"},
    [AP_CMD_CHANGE_BATCH_QUANTITY] = {"ChangeBatchQuantity", "change_batch_quantity"},
    [AP_EVT_BATCH_CREATED] = {"BatchCreated", "batch_created"},
    [AP_EVT_BATCH_QUANTITY_CHANGED] = {"BatchQuantityChanged", "batch_quantity_changed"},
    [AP_EVT_ALLOCATED] = {"Allocated", "allocated"},
    [AP_EVT_DEALLOCATED] = {"Deallocated", "deallocated"},
    [AP_EVT_OUT_OF_STOCK] = {"OutOfStock", "out_of_stock"},
};

const char *ap_msg_type_name(ap_msg_type_t type)
{
    if ((unsigned)type >= AP_MSG__COUNT)
        return "?";
    return type_names[type].camel;
}

static bool name_is(const char *name, size_t len, const char *candidate)
{
    return strlen(candidate) == len && memcmp(name, candidate, len) == 0;
}

ap_msg_type_t ap_msg_type_parse(const char *name, size_t len)
{
    for (int t = AP_MSG_NONE + 1; t < AP_MSG__COUNT; t++) {
        if (name_is(name, len, type_names[t].camel) || name_is(name, len, type_names[t].snake))
            return (ap_msg_type_t)t;
    }
    return AP_MSG_NONE;
}

bool ap_msg_is_command(ap_msg_type_t type)
{
    return type >= AP_CMD_CREATE_BATCH && type <= AP_CMD_CHANGE_BATCH_QUANTITY;
}

bool ap_msg_is_event(ap_msg_type_t type)
{
    return type >= AP_EVT_BATCH_CREATED && type <= AP_EVT_OUT_OF_STOCK;
}

bool ap_str_set(char dst[AP_STR_SIZE], const char *src, size_t len)
{
    if (len > AP_STR_MAX || memchr(src, '\0', len) != NULL) {
        dst[0] = '\0';
        return false;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
    return true;
}

static bool set_cstr(char dst[AP_STR_SIZE], const char *src)
{
    return ap_str_set(dst, src, strnlen(src, AP_STR_SIZE));
}

ap_err_t ap_msg_create_batch(ap_msg_t *msg, const char *ref, const char *sku, int64_t qty,
                             bool has_eta, int32_t eta)
{
    memset(msg, 0, sizeof *msg);
    msg->type = AP_CMD_CREATE_BATCH;
    if (!set_cstr(msg->ref, ref) || !set_cstr(msg->sku, sku))
        return AP_ERR_INVALID_COMMAND;
    msg->qty = qty;
    msg->has_eta = has_eta;
    msg->eta = has_eta ? eta : 0;
    return AP_OK;
}

ap_err_t ap_msg_allocate(ap_msg_t *msg, const char *orderid, const char *sku, int64_t qty)
{
    memset(msg, 0, sizeof *msg);
    msg->type = AP_CMD_ALLOCATE;
    if (!set_cstr(msg->orderid, orderid) || !set_cstr(msg->sku, sku))
        return AP_ERR_INVALID_COMMAND;
    msg->qty = qty;
    return AP_OK;
}

ap_err_t ap_msg_change_batch_quantity(ap_msg_t *msg, const char *ref, int64_t qty)
{
    memset(msg, 0, sizeof *msg);
    msg->type = AP_CMD_CHANGE_BATCH_QUANTITY;
    if (!set_cstr(msg->ref, ref))
        return AP_ERR_INVALID_COMMAND;
    msg->qty = qty;
    return AP_OK;
}

static ap_err_t reject(char *why, size_t whylen, const char *type, const char *problem)
{
    if (why && whylen)
        snprintf(why, whylen, "%s: %s", type, problem);
    return AP_ERR_INVALID_COMMAND;
}

ap_err_t ap_command_validate(const ap_msg_t *msg, char *why, size_t whylen)
{
    const char *name = ap_msg_type_name(msg->type);
    const char *fields[] = {msg->ref, msg->sku, msg->orderid, msg->batchref};

    /* Only a struct filled by hand can hold an unterminated field; refuse it before any
     * string function reads past its end. */
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        if (strnlen(fields[i], AP_STR_SIZE) == AP_STR_SIZE)
            return reject(why, whylen, name, "a field is longer than 255 bytes");
    }

    switch (msg->type) {
    case AP_CMD_CREATE_BATCH:
        if (!msg->ref[0])
            return reject(why, whylen, name, "missing or empty field ref");
        if (!msg->sku[0])
            return reject(why, whylen, name, "missing or empty field sku");
        if (msg->qty < 0)
            return reject(why, whylen, name, "qty must be >= 0");
        return AP_OK;
    case AP_CMD_ALLOCATE:
        if (!msg->orderid[0])
            return reject(why, whylen, name, "missing or empty field orderid");
        if (!msg->sku[0])
            return reject(why, whylen, name, "missing or empty field sku");
        if (msg->qty <= 0)
            return reject(why, whylen, name, "qty must be > 0");
        return AP_OK;
    case AP_CMD_CHANGE_BATCH_QUANTITY:
        if (!msg->ref[0])
            return reject(why, whylen, name, "missing or empty field ref");
        if (msg->qty < 0)
            return reject(why, whylen, name, "qty must be >= 0");
        return AP_OK;
    default:
        return reject(why, whylen, name, "not a command");
    }
}

/* Days from a proleptic Gregorian date, counting 400-year eras of 146097 days with the year
 * starting in March so the leap day falls last. */
static int32_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    const int era = (y >= 0 ? y : y - 399) / 400;
    const int yoe = y - era * 400;
    const int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int32_t)(era * 146097 + doe - 719468);
}

static void civil_from_days(int32_t z, int *y, int *m, int *d)
{
    z += 719468;
    const int era = (z >= 0 ? z : z - 146096) / 146097;
    const int doe = z - era * 146097;
    const int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

static bool digits(const char *s, size_t n, int *value)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *value = v;
    return true;
}

bool ap_date_parse(const char *text, size_t len, int32_t *days)
{
    int y, m, d;

    if (len != AP_DATE_LEN || text[4] != '-' || text[7] != '-')
        return false;
    if (!digits(text, 4, &y) || !digits(text + 5, 2, &m) || !digits(text + 8, 2, &d))
        return false;
    if (y < 1 || m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
        return false;
    *days = days_from_civil(y, m, d);
    return true;
}

void ap_date_format(int32_t days, char out[AP_DATE_LEN + 1])
{
    int y, m, d;

    civil_from_days(days, &y, &m, &d);
    snprintf(out, AP_DATE_LEN + 1, "%04u-%02u-%02u", (unsigned)y % 10000u, (unsigned)m % 100u,
             (unsigned)d % 100u);
}

void ap_uuid4_format(const uint8_t bytes[16], char out[AP_EVENT_ID_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    memcpy(b, bytes, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 0x0f];
    }
    *p = '\0';
}
