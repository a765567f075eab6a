/*
 * error.h - the one error type every layer returns.
 *
 * AP_OK is zero so `if ((err = f()))` reads naturally. The kinds matter more than the
 * individual codes: a *rejection* is reported and the input is skipped, a *transient*
 * error is retried by whoever owns the transaction, anything else is a failure that is
 * logged (or a bug, which asserts instead of returning).
 */
#ifndef AP_ERROR_H
#define AP_ERROR_H

#include <stdbool.h>

/* X(name, rejection reason or NULL, human text) */
#define AP_ERRORS(X)                                                                  \
    X(AP_OK, NULL, "success")                                                         \
    X(AP_ERR_NOMEM, NULL, "out of memory")                                            \
    X(AP_ERR_INVALID_COMMAND, "invalid_command", "invalid command")                   \
    X(AP_ERR_INVALID_SKU, "invalid_sku", "invalid sku")                               \
    X(AP_ERR_UNKNOWN_BATCH, "unknown_batch", "unknown batch")                         \
    X(AP_ERR_BATCH_EXISTS, "batch_exists", "batch exists with different fields")      \
    X(AP_ERR_NOT_FOUND, NULL, "not found")                                            \
    X(AP_ERR_CONFLICT, NULL, "concurrent modification")                               \
    X(AP_ERR_FENCED, NULL, "partition is owned by another consumer")                  \
    X(AP_ERR_UNAVAILABLE, NULL, "service unavailable")                                \
    X(AP_ERR_DECODE, NULL, "undecodable message")                                     \
    X(AP_ERR_CONFIG, NULL, "bad configuration")                                       \
    X(AP_ERR_IO, NULL, "I/O error")                                                   \
    X(AP_ERR_TOO_LARGE, NULL, "too large for the topic")                              \
    X(AP_ERR_REFUSED, NULL, "refused for good")                                       \
    X(AP_ERR_INTERNAL, NULL, "internal error")                                        \
    X(AP_ERR_NEED_LINES, NULL, "the product needs lines storage has not loaded")

typedef enum {
#define AP_ERR_ENUM_(name, reason, text) name,
    AP_ERRORS(AP_ERR_ENUM_)
#undef AP_ERR_ENUM_
    AP_ERR__COUNT
} ap_err_t;

/* Human text for an error; never NULL. */
const char *ap_strerror(ap_err_t err);

/* The contract's rejection reason ("invalid_sku", ...) or NULL when err is not a rejection. */
const char *ap_err_reason(ap_err_t err);

/* A valid command the domain refused: reported, never retried. */
bool ap_err_is_rejection(ap_err_t err);

/* Worth retrying the whole command from scratch: conflicts and lost connections. */
bool ap_err_is_transient(ap_err_t err);

/*
 * Says why, printf-style, into a caller's `why` buffer of `whylen` bytes; nothing when the
 * caller passed none. The shape of every function that explains a refusal:
 *
 *     ap_err_t f(..., char *why, size_t whylen)
 *     {
 *         if (len > MAX) {
 *             AP_SAY(why, whylen, "too long: %zu bytes", len);
 *             return AP_ERR_DECODE;
 *         }
 *
 * (Include <stdio.h> where it is used.)
 */
#define AP_SAY(why, whylen, ...) \
    ((why) && (whylen) ? (void)snprintf((why), (whylen), __VA_ARGS__) : (void)0)

#endif
