/*
 * registry.h - a client of a Confluent-compatible schema registry (REST, libcurl).
 *
 * Only the calls the processor needs: register a schema under a subject (at start-up, for
 * every event topic's `<topic>-value`) and fetch a writer schema by id (for Avro commands in
 * the confluent framing). Answers are cached, so each subject/schema and each id costs one
 * request per process. A registry belongs to one thread.
 */
#ifndef AP_REGISTRY_H
#define AP_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "ap/error.h"

typedef struct ap_registry ap_registry_t;

/* `url` is the registry's base, e.g. "http://127.0.0.1:8081"; it may hold credentials
 * (user:password@), which are never logged. Caller frees with ap_registry_free. */
ap_err_t ap_registry_new(const char *url, ap_registry_t **out);
void ap_registry_free(ap_registry_t *registry);

/*
 * POST /subjects/<subject>/versions {"schema": ...} -> the schema's id. The registry's refusal
 * (409 incompatible, 422 invalid, other 4xx) gives AP_ERR_CONFIG with the registry's own
 * message in `why`; no answer, 5xx, 408, 429 or a malformed answer gives AP_ERR_UNAVAILABLE.
 */
ap_err_t ap_registry_register(ap_registry_t *registry, const char *subject,
                              const char *schema_json, int32_t *id, char *why, size_t whylen);

/* GET /schemas/ids/<id> -> the schema's JSON (caller frees). AP_ERR_NOT_FOUND for 404. */
ap_err_t ap_registry_schema_by_id(ap_registry_t *registry, int32_t id, char **schema_json);

/*
 * How the calls read the registry's answers (exposed for tests and the fuzz harness): `body`
 * is the answer's `len` bytes, NUL-terminated or not, and untrusted.
 *
 * ap_registry_answer_id: the "id" of a registration's answer (0..INT32_MAX), else
 * AP_ERR_UNAVAILABLE. ap_registry_answer_schema: the "schema" string of GET /schemas/ids/<id>'s
 * answer (caller frees), AP_ERR_UNAVAILABLE when there is none or it holds a NUL.
 * ap_registry_answer_refusal: the text of a refusal with HTTP `status`, with the registry's
 * "message" and "error_code" when the body has them.
 */
ap_err_t ap_registry_answer_id(const char *body, size_t len, int32_t *id);
ap_err_t ap_registry_answer_schema(const char *body, size_t len, char **schema_json);
void ap_registry_answer_refusal(const char *body, size_t len, long status, char *why,
                                size_t whylen);

#endif
