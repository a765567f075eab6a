/*
 * fake_registry.h - a small Confluent-compatible schema registry for tests, served over real
 * HTTP (libmicrohttpd) on 127.0.0.1 at an ephemeral port.
 *
 * It answers only the calls the processor makes: POST /subjects/<subject>/versions
 * {"schema": "..."} -> {"id": N} (the same schema text gets the same id under any subject, a
 * new text a new id, counting from 1), and GET /schemas/ids/<id> -> {"schema": "..."} or 404
 * {"error_code":40403,...}. A schema that is not JSON gets 422 (error_code 42201), as the real
 * registry does for an unparsable schema. It is not a registry: no compatibility checks, no
 * other routes, no persistence.
 *
 * Its state is behind a mutex: the functions below may be called from the test's thread while
 * microhttpd's thread serves requests.
 */
#ifndef AP_TEST_FAKE_REGISTRY_H
#define AP_TEST_FAKE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct fake_registry fake_registry_t;

/* Starts serving; NULL when microhttpd cannot start. Caller stops with fake_registry_stop. */
fake_registry_t *fake_registry_start(void);
/* Stops serving and frees everything; NULL is a no-op. */
void fake_registry_stop(fake_registry_t *fake);

/* "http://127.0.0.1:<port>" (borrowed, valid until stop) and the port alone. */
const char *fake_registry_url(fake_registry_t *fake);
unsigned fake_registry_port(fake_registry_t *fake);

/*
 * The next request (a registration or a lookup) fails with `http_status`: 409 answers
 * "incompatible" (error_code 409), 422 "invalid schema" (42201), 5xx a backend error
 * (50001), any other 4xx a generic refusal, all with a Confluent error body. 200 answers a
 * body that is not JSON, to test malformed answers. Once only.
 */
void fake_registry_fail_next(fake_registry_t *fake, int http_status);

/* Requests answered so far, of any kind and outcome. */
unsigned fake_registry_requests(fake_registry_t *fake);

/* Versions registered under `subject` (a schema registered twice is one version). */
unsigned fake_registry_versions(fake_registry_t *fake, const char *subject);

/*
 * A header of the last request: "Content-Type" or "Authorization" (others are not kept).
 * Copies it into buf (truncated to size - 1); false when the last request had none.
 */
bool fake_registry_last_header(fake_registry_t *fake, const char *name, char *buf, size_t size);

#endif
