/*
 * denial.h - why a service turns us away: it refused our credentials, or its certificate did
 * not verify. Those are connection failures that retrying does not fix until someone changes a
 * setting (a password, a Secret, a CA bundle), so they must not hide among the transient
 * "not reachable, retrying" ones.
 *
 * The adapters that connect report them here and clear them when a connection succeeds; the
 * readiness probe and the metrics read them. The first report of a reason (and any change of
 * it) is logged once, at ERROR; repeats are not. One record per service for the whole process,
 * like the log's level: any thread may report, clear or read. Reasons quote the library's
 * message, which names users, hosts and certificates but never a password.
 */
#ifndef AP_DENIAL_H
#define AP_DENIAL_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { AP_SERVICE_POSTGRES, AP_SERVICE_KAFKA, AP_SERVICE_COUNT } ap_service_t;

typedef enum {
    AP_DENIAL_NONE,
    AP_DENIAL_AUTHENTICATION, /* wrong user or password, no matching pg_hba rule, ... */
    AP_DENIAL_TLS,            /* the certificate did not verify, or TLS could not be agreed */
} ap_denial_cause_t;

/* Records `cause` with the library's one-line `text` for `service`; logs it when new. */
void ap_denial_report(ap_service_t service, ap_denial_cause_t cause, const char *text);

/* A connection to `service` succeeded: forgets its denial (logged when there was one). */
void ap_denial_clear(ap_service_t service);

/* The cause recorded for `service` (AP_DENIAL_NONE: none); when `reason` is not NULL, the
 * reason as "authentication failed: <text>" or "TLS failed: <text>" in it. */
ap_denial_cause_t ap_denial_get(ap_service_t service, char *reason, size_t len);

/* The cause a libpq connection error message names, or AP_DENIAL_NONE (plain unreachability). */
ap_denial_cause_t ap_denial_classify_pg(const char *text);

#endif
