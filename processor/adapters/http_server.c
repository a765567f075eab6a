/*
 * http_server.c - libmicrohttpd behind http.h.
 *
 * MHD runs a listening thread and one thread per connection (a handler may block while a
 * command is on its way through Kafka and Postgres). A request's body is gathered into a
 * buffer of the adapter's, up to the limit; past it the rest is read and dropped, and the
 * handler sees body_too_large. MHD's own messages go through ap_log.
 */
#include "ap/http.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ap/log.h"
#include "ap/strbuf.h"

#define CONNECTION_LIMIT 512
#define CONNECTION_TIMEOUT_S 60

struct ap_http_server {
    struct MHD_Daemon *daemon;
    ap_http_handler_fn handler;
    void *ctx;
    size_t max_body;
    int port;
};

/* One request's state between MHD's calls. */
typedef struct pending {
    ap_strbuf_t body;
    bool too_large;
} pending_t;

bool ap_http_addr_split(const char *addr, char *host, size_t hostlen, char *port,
                        size_t portlen)
{
    const char *colon, *h = addr;
    size_t hlen;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return false;
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
            return false;
        hlen = (size_t)(colon - addr);
    }
    const char *p = colon + 1;
    size_t plen = strlen(p);
    if (hlen == 0 || hlen >= hostlen || plen == 0 || plen >= portlen || plen > 5)
        return false;
    for (const char *c = p; *c; c++) {
        if (*c < '0' || *c > '9')
            return false;
    }
    if (atol(p) > 65535)
        return false;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memcpy(port, p, plen + 1);
    return true;
}

const char *ap_http_request_header(const ap_http_request_t *req, const char *name)
{
    if (req->header_fn)
        return req->header_fn(req, name);
    return MHD_lookup_connection_value(req->handle, MHD_HEADER_KIND, name);
}

static void log_mhd(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void log_mhd(void *cls, const char *fmt, va_list ap)
{
    char text[512];
    (void)cls;
    vsnprintf(text, sizeof text, fmt, ap);
    size_t len = strlen(text);
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        text[--len] = '\0';
    AP_WARN("http", "%s", text);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    pending_t *pending = *con_cls;
    if (pending) {
        ap_strbuf_release(&pending->body);
        free(pending);
        *con_cls = NULL;
    }
}

static bool gather(ap_http_server_t *server, pending_t *pending, const char *data, size_t size)
{
    if (pending->too_large || size > server->max_body - pending->body.len) {
        pending->too_large = true;
        return true;
    }
    ap_strbuf_add(&pending->body, data, size);
    return !pending->body.failed;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    ap_http_server_t *server = cls;
    pending_t *pending = *con_cls;
    (void)version;

    if (!pending) {
        if (!(pending = calloc(1, sizeof *pending)))
            return MHD_NO;
        *con_cls = pending;
        /* A declared length over the limit is refused without reading it into memory. */
        const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && strtoull(length, NULL, 10) > server->max_body)
            pending->too_large = true;
        return MHD_YES;
    }
    if (*upload_data_size) {
        bool ok = gather(server, pending, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return ok ? MHD_YES : MHD_NO;
    }

    ap_http_request_t req = {.method = method,
                             .path = url,
                             .body = pending->too_large || !pending->body.buf ? "" : pending->body.buf,
                             .body_len = pending->too_large ? 0 : pending->body.len,
                             .body_too_large = pending->too_large,
                             .handle = conn};
    ap_http_response_t res = {.status = 500};
    server->handler(server->ctx, &req, &res);

    struct MHD_Response *response = MHD_create_response_from_buffer(
        res.body_len, res.body ? res.body : (void *)"", res.body ? MHD_RESPMEM_MUST_FREE
                                                                : MHD_RESPMEM_PERSISTENT);
    if (!response) {
        free(res.body);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
                            res.content_type ? res.content_type : "application/json");
    if (res.location[0])
        MHD_add_response_header(response, MHD_HTTP_HEADER_LOCATION, res.location);
    if (res.allow[0])
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, res.allow);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)res.status, response);
    MHD_destroy_response(response);
    return ret;
}

ap_err_t ap_http_server_start(const char *addr, size_t max_body, ap_http_handler_fn handler,
                              void *ctx, ap_http_server_t **out)
{
    char host[256], port[8];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *found = NULL;

    if (!ap_http_addr_split(addr, host, sizeof host, port, sizeof port))
        return AP_ERR_CONFIG;
    int rc = getaddrinfo(host, port, &hints, &found);
    if (rc) {
        AP_ERROR("http", "HTTP_ADDR %s: %s", addr, gai_strerror(rc));
        return AP_ERR_CONFIG;
    }
    ap_http_server_t *server = calloc(1, sizeof *server);
    if (!server) {
        freeaddrinfo(found);
        return AP_ERR_NOMEM;
    }
    server->handler = handler;
    server->ctx = ctx;
    server->max_body = max_body;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (found->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The logger first: libmicrohttpd says so (with its own logger) when it comes later. */
    server->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, answer, server, MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL,
        MHD_OPTION_SOCK_ADDR, found->ai_addr, MHD_OPTION_NOTIFY_COMPLETED, completed, server,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_END);
    freeaddrinfo(found);
    if (!server->daemon) {
        AP_ERROR("http", "cannot listen on %s (in use, or not an address of this host?)", addr);
        free(server);
        return AP_ERR_IO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(server->daemon,
                                                           MHD_DAEMON_INFO_BIND_PORT);
    server->port = info ? (int)info->port : atoi(port);
    *out = server;
    return AP_OK;
}

int ap_http_server_port(ap_http_server_t *server)
{
    return server->port;
}

void ap_http_server_stop(ap_http_server_t *server)
{
    if (!server)
        return;
    MHD_stop_daemon(server->daemon);
    free(server);
}
