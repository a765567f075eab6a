/*
 * fault.h - what is wrong with a dependency, in words an operator acts on: the kinds of
 * trouble the processor tells apart in its log, on /readyz and on /metrics.
 *
 * Adapters classify what their library said (a SQLSTATE, a Kafka error code) into one of
 * these; the loops keep the latest in their health flags; the HTTP side names it. It is not
 * an error code: the ap_err_t that travels with it says who retries.
 */
#ifndef AP_FAULT_H
#define AP_FAULT_H

/* X(name, metric label, what /readyz says) */
#define AP_FAULTS(X)                                                                       \
    X(AP_FAULT_NONE, "none", "ok")                                                         \
    X(AP_FAULT_UNREACHABLE, "unreachable", "unreachable")                                  \
    X(AP_FAULT_READ_ONLY, "read_only",                                                     \
      "read-only (default_transaction_read_only, or a standby): nothing can be written")   \
    X(AP_FAULT_CONNECTION_LIMIT, "connection_limit",                                       \
      "connection limit reached: the server refuses new sessions")                         \
    X(AP_FAULT_NO_RESOURCES, "no_resources",                                               \
      "out of resources (disk full, out of memory)")                                       \
    X(AP_FAULT_AUTHENTICATION, "authentication",                                           \
      "authentication failed: the server refuses these credentials")                       \
    X(AP_FAULT_TLS, "tls", "TLS failed: the server's certificate did not verify")            \
    X(AP_FAULT_TOO_LARGE, "record_too_large",                                              \
      "a topic refuses an event as too large (max.message.bytes): its sku's events wait")

typedef enum {
#define AP_FAULT_ENUM(name, label, text) name,
    AP_FAULTS(AP_FAULT_ENUM)
#undef AP_FAULT_ENUM
    AP_FAULT_COUNT
} ap_fault_t;

/* The metric label ("read_only") and the readiness text of a fault; static strings. */
const char *ap_fault_label(ap_fault_t fault);
const char *ap_fault_text(ap_fault_t fault);

#endif
