/*
 * error.c - names and kinds of ap_err_t, generated from the AP_ERRORS table.
 */
#include "ap/error.h"

#include <stddef.h>

static const struct {
    const char *reason;
    const char *text;
} errors[] = {
#define AP_ERR_ROW_(name, reason, text) [name] = {reason, text},
    AP_ERRORS(AP_ERR_ROW_)
#undef AP_ERR_ROW_
};

const char *ap_strerror(ap_err_t err)
{
    if ((unsigned)err >= AP_ERR__COUNT)
        return "unknown error";
    return errors[err].text;
}

const char *ap_err_reason(ap_err_t err)
{
    if ((unsigned)err >= AP_ERR__COUNT)
        return NULL;
    return errors[err].reason;
}

bool ap_err_is_rejection(ap_err_t err)
{
    return ap_err_reason(err) != NULL;
}

bool ap_err_is_transient(ap_err_t err)
{
    return err == AP_ERR_CONFLICT || err == AP_ERR_UNAVAILABLE;
}
