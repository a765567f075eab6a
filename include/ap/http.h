/*
 * http.h - the HTTP server adapter: a listener that hands each complete request to one
 * handler function and sends back what it fills in. It knows no routes, JSON or domain;
 * entrypoints/http_routes.c does.
 *
 * Every connection is served by a thread of its own, so a handler may block (the API waits
 * for a command's outcome) without holding up other clients. The handler therefore runs on
 * many threads at once.
 */
#ifndef AP_HTTP_H
#define AP_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "ap/error.h"

typedef struct ap_http_server ap_http_server_t;

/* A complete request, borrowed for the handler's call. */
typedef struct ap_http_request {
    const char *method;   /* "GET", "POST", ... */
    const char *path;     /* without the query string */
    const char *body;     /* NUL-terminated copy of the body ("" when none) */
    size_t body_len;
    bool body_too_large;  /* over the server's limit: `body` is empty */
    void *handle;         /* the adapter's own connection */
    /* For a request made without the server (tests, the fuzz harness): how
     * ap_http_request_header finds a header. NULL for the server's requests. */
    const char *(*header_fn)(const struct ap_http_request *req, const char *name);
} ap_http_request_t;

/* What the handler answers. `body` is malloc'd by the handler; the server frees it. */
typedef struct ap_http_response {
    int status;
    const char *content_type; /* a constant; NULL: application/json */
    char *body;
    size_t body_len;
    char location[512]; /* a Location header when not empty */
    char allow[64];     /* an Allow header when not empty (405) */
} ap_http_response_t;

typedef void (*ap_http_handler_fn)(void *ctx, const ap_http_request_t *req,
                                   ap_http_response_t *res);

/* A request header's value (case-insensitive name), or NULL. Borrowed like the request. */
const char *ap_http_request_header(const ap_http_request_t *req, const char *name);

/*
 * Listens on `addr` ("HOST:PORT", "[V6]:PORT"; port 0 picks a free one) and serves until
 * stopped. Bodies over `max_body` bytes are not kept (body_too_large). AP_ERR_CONFIG when
 * the address cannot be parsed, AP_ERR_IO (logged) when it cannot be bound. Caller stops
 * with ap_http_server_stop.
 */
ap_err_t ap_http_server_start(const char *addr, size_t max_body, ap_http_handler_fn handler,
                              void *ctx, ap_http_server_t **out);

/* The port actually bound (useful with port 0). */
int ap_http_server_port(ap_http_server_t *server);

/* Stops listening, waits for the requests in hand, frees. NULL is a no-op. */
void ap_http_server_stop(ap_http_server_t *server);

/* Splits "HOST:PORT" / "[V6]:PORT" into its parts; false when malformed. For config.c too. */
bool ap_http_addr_split(const char *addr, char *host, size_t hostlen, char *port,
                        size_t portlen);

#endif
