/*
 * http_routes.h - the HTTP API of `allocation-processor run`: the book's two commands
 * (through the command topic), the allocations view, what became of a command, probes and
 * metrics. contract.md's HTTP section is the specification; this module maps requests to the
 * ports and adapters it is given and answers in JSON.
 */
#ifndef AP_ENTRYPOINTS_HTTP_ROUTES_H
#define AP_ENTRYPOINTS_HTTP_ROUTES_H

#include <jansson.h>

#include "ap/config.h"
#include "ap/http.h"
#include "ap/outcomes.h"
#include "entrypoints/command_gateway.h"
#include "entrypoints/consumer.h"
#include "entrypoints/email_sender.h"
#include "entrypoints/instruments.h"
#include "ap/relay.h"

#define AP_HTTP_MAX_BODY (64 * 1024)

typedef struct ap_http_api ap_http_api_t;

/* What the API works with; all borrowed until ap_http_api_stop returns. */
typedef struct ap_http_api_deps {
    const ap_config_t *cfg;
    ap_command_gateway_t *gateway;
    ap_outcome_store_t *outcomes;
    const ap_health_t *health;
    const ap_instruments_t *ins;
} ap_http_api_deps_t;

/* Listens on cfg->http_addr (logged with the port bound). AP_ERR_IO when it cannot. */
ap_err_t ap_http_api_start(const ap_http_api_deps_t *deps, ap_http_api_t **out);

/* Lets the health and metrics collectors read the relay (started after the API). */
void ap_http_api_set_relay(ap_http_api_t *api, ap_relay_t *relay);

/* Lets the metrics collector read the email sender's counts (started after the API). */
void ap_http_api_set_email_sender(ap_http_api_t *api, ap_email_sender_t *email);

/* Stops serving; NULL is a no-op. */
void ap_http_api_stop(ap_http_api_t *api);

/*
 * The allocations view as GET /allocations/{orderid} answers it and the `allocations` command
 * prints it: [{"sku":..,"batchref":..}, ...]. Caller decrefs (json_decref).
 */
json_t *ap_http_allocations_json(const ap_allocation_row_t *rows, size_t nrows);

/*
 * The body of POST /add_batch (`type` AP_CMD_CREATE_BATCH) or /allocate (AP_CMD_ALLOCATE) as
 * a command: decoded as JSON with `type` overriding any "type" field, validated, qty > 0.
 * `body` is the request's NUL-terminated copy, `len` bytes before the NUL. AP_OK, or the
 * decoder's or validator's error with the 400 answer's message in `why`. Any thread.
 */
ap_err_t ap_http_parse_command(const char *body, size_t len, ap_msg_type_t type, ap_msg_t *cmd,
                               char *why, size_t whylen);

/* A command request as read from its headers and body, before anything is produced. */
typedef struct ap_http_command_request {
    ap_msg_t cmd;
    char key[AP_STR_SIZE];            /* Idempotency-Key; "" when none was given */
    char correlation_id[AP_STR_SIZE]; /* X-Correlation-ID; "" when none fit was given */
    char traceparent[AP_STR_SIZE];    /* "" when none fit was given (it is then dropped) */
} ap_http_command_request_t;

/*
 * Reads POST /add_batch (`type` AP_CMD_CREATE_BATCH) or /allocate (AP_CMD_ALLOCATE): the
 * bearer token in Authorization when `token` is not NULL, the body's size, the headers and
 * the body (ap_http_parse_command). 0 with `out` filled, or the status to answer (401, 413,
 * 400) with the answer's message in `why`. Pure: any thread, no I/O.
 */
int ap_http_read_command(const ap_http_request_t *req, const char *token, ap_msg_type_t type,
                         ap_http_command_request_t *out, char *why, size_t whylen);

/* Constant-time comparison of a presented bearer token with the configured one. */
bool ap_http_token_equal(const char *presented, const char *expected);

#endif
