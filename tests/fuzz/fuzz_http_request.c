/*
 * fuzz_http_request.c - libFuzzer harness of how the API reads a command request
 * (ap_http_read_command): the headers it looks at (Authorization, Idempotency-Key,
 * X-Correlation-ID, traceparent) and the body, for both routes, with and without a bearer
 * token configured. The raw request line and framing are libmicrohttpd's; the harness hands
 * headers over as it does, one value per name, without CR, LF or NUL.
 *
 * Input: header lines "Name: value" (LF or CRLF), an empty line, then the body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "entrypoints/http_routes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TOKEN "s3cret-token"
#define MAX_HEADERS 16

struct fuzz_request {
    ap_http_request_t req; /* first: the header function gets it back */
    const char *names[MAX_HEADERS], *values[MAX_HEADERS];
    size_t count;
};

/* The first header of that name, as libmicrohttpd answers (case-insensitive). */
static const char *header(const ap_http_request_t *req, const char *name)
{
    const struct fuzz_request *r = (const struct fuzz_request *)req;
    for (size_t i = 0; i < r->count; i++) {
        if (strcasecmp(r->names[i], name) == 0)
            return r->values[i];
    }
    return NULL;
}

/* Splits `text` (NUL-terminated, written into) into header lines and the body. */
static void split(char *text, size_t size, struct fuzz_request *r)
{
    char *p = text, *end = text + size;
    while (p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        char *next = eol ? eol + 1 : end;
        if (eol) {
            *eol = '\0';
            if (eol > p && eol[-1] == '\r')
                eol[-1] = '\0';
        }
        if (*p == '\0') { /* the empty line: the body follows */
            p = next;
            break;
        }
        char *colon = strchr(p, ':');
        if (colon && r->count < MAX_HEADERS) {
            *colon = '\0';
            char *value = colon + 1;
            while (*value == ' ' || *value == '\t')
                value++;
            r->names[r->count] = p;
            r->values[r->count++] = value;
        }
        p = next;
    }
    r->req.body = p < end ? p : "";
    r->req.body_len = p < end ? (size_t)(end - p) : 0;
}

/* Printable ASCII, 1 to AP_STR_MAX bytes, as the API lets ids through. */
static bool fit(const char *id)
{
    size_t len = strlen(id);
    if (len == 0)
        return true; /* not given */
    if (len > AP_STR_MAX)
        return false;
    for (; *id; id++) {
        if (*id < 0x21 || *id > 0x7e)
            return false;
    }
    return true;
}

static void one(const struct fuzz_request *r, const char *token, ap_msg_type_t type)
{
    ap_http_command_request_t in;
    char why[512];
    int status = ap_http_read_command(&r->req, token, type, &in, why, sizeof why);
    if (status) {
        if ((status != 400 && status != 401 && status != 413) || !why[0])
            abort();
        return;
    }
    const char *auth = header(&r->req, "Authorization");
    if (token && (!auth || strncasecmp(auth, "Bearer ", 7) != 0 || strcmp(auth + 7, TOKEN) != 0))
        abort(); /* let through without the token */
    if (in.cmd.type != type || in.cmd.qty <= 0 || !fit(in.key) || !fit(in.correlation_id) ||
        !fit(in.traceparent))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_request r = {.req = {.method = "POST", .path = "/allocate", .header_fn = header}};
    char *text = malloc(size + 1);

    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    split(text, size, &r);
    r.req.body_too_large = r.req.body_len > AP_HTTP_MAX_BODY;
    one(&r, NULL, AP_CMD_ALLOCATE);
    one(&r, NULL, AP_CMD_CREATE_BATCH);
    one(&r, TOKEN, AP_CMD_ALLOCATE);
    one(&r, TOKEN, AP_CMD_CREATE_BATCH);
    free(text);
    return 0;
}
