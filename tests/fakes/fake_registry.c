/*
 * fake_registry.c - a Confluent-compatible schema registry for tests (see fake_registry.h):
 * libmicrohttpd serves it from its own thread, jansson reads and writes the bodies, and one
 * mutex guards the state that thread shares with the test.
 *
 * Schemas are kept in memory in registration order (id = index + 1), compared by their exact
 * text; subjects only remember which ids were registered under them.
 */
#include "fake_registry.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define CONTENT_TYPE "application/vnd.schemaregistry.v1+json"
#define MAX_BODY (1u << 20)

struct version {
    char *subject;
    unsigned id;
};

struct fake_registry {
    struct MHD_Daemon *daemon;
    unsigned port;
    char url[64];

    pthread_mutex_t lock; /* guards everything below */
    char **schemas;       /* schemas[id - 1] */
    size_t n_schemas, cap_schemas;
    struct version *versions;
    size_t n_versions, cap_versions;
    int fail_next;
    unsigned requests;
    char *last_content_type, *last_authorization;
};

/* One request's upload, gathered across microhttpd's calls. */
struct upload {
    char *data;
    size_t len;
    bool too_large;
};

/* An answer: status, body (malloc'd) and its type. */
struct answer {
    unsigned status;
    char *body;
    const char *content_type;
};

/* ---------------------------------------------------------------- answers */

static struct answer json_answer(unsigned status, json_t *body)
{
    struct answer answer = {status, body ? json_dumps(body, JSON_COMPACT) : NULL, CONTENT_TYPE};
    json_decref(body);
    return answer;
}

static struct answer error_answer(unsigned status, int error_code, const char *message)
{
    return json_answer(status, json_pack("{s:i, s:s}", "error_code", error_code, "message",
                                         message));
}

/* The answer to a request that fail_next doomed. */
static struct answer failure_answer(int status, const char *subject)
{
    char message[512];

    if (status == 200)
        return (struct answer){200, strdup("this is not JSON"), "text/plain"};
    if (status == 409) {
        snprintf(message, sizeof message,
                 "Schema being registered is incompatible with an earlier schema for subject "
                 "\"%s\"",
                 subject ? subject : "?");
        return error_answer(409, 409, message);
    }
    if (status == 422)
        return error_answer(422, 42201, "Invalid schema");
    if (status >= 500)
        return error_answer((unsigned)status, 50001, "Error in the backend data store");
    snprintf(message, sizeof message, "HTTP %d refused by the fake registry", status);
    return error_answer((unsigned)status, status, message);
}

/* `array` with room for one more than `n` elements; NULL (array untouched) when out of memory. */
static void *grow(void *array, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return array;
    size_t new_cap = *cap ? *cap * 2 : 8;
    void *grown = realloc(array, new_cap * size);
    if (grown)
        *cap = new_cap;
    return grown;
}

/* POST /subjects/<subject>/versions. Called with the lock held. */
static struct answer do_register(fake_registry_t *fake, const char *subject,
                                 const struct upload *up)
{
    json_t *request = NULL, *parsed = NULL;
    struct answer answer;

    if (up->too_large)
        return error_answer(413, 413, "request too large");
    request = json_loadb(up->data ? up->data : "", up->len, 0, NULL);
    json_t *schema = request ? json_object_get(request, "schema") : NULL;
    if (!request) {
        answer = error_answer(400, 400, "Unexpected character in the request body");
        goto out;
    }
    if (!json_is_string(schema)) {
        answer = error_answer(422, 42201, "Either the input schema or one of its references is "
                                          "invalid");
        goto out;
    }
    const char *text = json_string_value(schema);
    parsed = json_loads(text, JSON_DECODE_ANY, NULL);
    if (!parsed) {
        answer = error_answer(422, 42201, "Invalid schema");
        goto out;
    }

    size_t index = 0;
    while (index < fake->n_schemas && strcmp(fake->schemas[index], text) != 0)
        index++;
    if (index == fake->n_schemas) {
        char **schemas = grow(fake->schemas, &fake->cap_schemas, fake->n_schemas,
                              sizeof *schemas);
        if (schemas)
            fake->schemas = schemas;
        char *copy = schemas ? strdup(text) : NULL;
        if (!copy) {
            answer = error_answer(500, 50001, "out of memory");
            goto out;
        }
        fake->schemas[fake->n_schemas++] = copy;
    }
    unsigned id = (unsigned)index + 1;

    bool known = false;
    for (size_t i = 0; i < fake->n_versions && !known; i++)
        known = fake->versions[i].id == id && strcmp(fake->versions[i].subject, subject) == 0;
    if (!known) {
        struct version *versions = grow(fake->versions, &fake->cap_versions, fake->n_versions,
                                        sizeof *versions);
        if (versions)
            fake->versions = versions;
        char *copy = versions ? strdup(subject) : NULL;
        if (!copy) {
            answer = error_answer(500, 50001, "out of memory");
            goto out;
        }
        fake->versions[fake->n_versions++] = (struct version){copy, id};
    }
    answer = json_answer(200, json_pack("{s:i}", "id", (int)id));
out:
    json_decref(parsed);
    json_decref(request);
    return answer;
}

/* GET /schemas/ids/<id>. Called with the lock held. */
static struct answer do_lookup(fake_registry_t *fake, const char *id_text)
{
    char *end = NULL;
    unsigned long id = strtoul(id_text, &end, 10);

    if (!*id_text || *end || id == 0 || id > fake->n_schemas)
        return error_answer(404, 40403, "Schema not found");
    return json_answer(200, json_pack("{s:s}", "schema", fake->schemas[id - 1]));
}

static void remember_header(struct MHD_Connection *connection, const char *name, char **slot)
{
    const char *value = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, name);
    free(*slot);
    *slot = value ? strdup(value) : NULL;
}

static bool accepted_content_type(const char *value)
{
    static const char *const types[] = {CONTENT_TYPE, "application/vnd.schemaregistry+json",
                                        "application/json"};
    if (!value)
        return false;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        size_t n = strlen(types[i]);
        if (strncasecmp(value, types[i], n) == 0 && (value[n] == '\0' || value[n] == ';'))
            return true;
    }
    return false;
}

/* Routes one complete request. Called with the lock held. */
static struct answer route(fake_registry_t *fake, struct MHD_Connection *connection,
                           const char *url, const char *method, const struct upload *up)
{
    static const char subjects[] = "/subjects/", versions[] = "/versions",
                      ids[] = "/schemas/ids/";
    size_t len = strlen(url);
    bool is_register = strncmp(url, subjects, sizeof subjects - 1) == 0 &&
                       len > sizeof subjects - 1 + sizeof versions - 1 &&
                       strcmp(url + len - (sizeof versions - 1), versions) == 0;
    bool is_lookup = strncmp(url, ids, sizeof ids - 1) == 0;
    char *subject = NULL;
    struct answer answer;

    if (is_register)
        subject = strndup(url + sizeof subjects - 1,
                          len - (sizeof subjects - 1) - (sizeof versions - 1));

    int fail = fake->fail_next;
    fake->fail_next = 0;
    if (fail) {
        answer = failure_answer(fail, subject);
    } else if (is_register && strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
        if (!accepted_content_type(MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                               MHD_HTTP_HEADER_CONTENT_TYPE)))
            answer = error_answer(415, 415, "HTTP 415 Unsupported Media Type");
        else if (!subject)
            answer = error_answer(500, 50001, "out of memory");
        else
            answer = do_register(fake, subject, up);
    } else if (is_lookup && strcmp(method, MHD_HTTP_METHOD_GET) == 0) {
        answer = do_lookup(fake, url + sizeof ids - 1);
    } else if (is_register || is_lookup) {
        answer = error_answer(405, 405, "HTTP 405 Method Not Allowed");
    } else {
        answer = error_answer(404, 404, "HTTP 404 Not Found");
    }
    free(subject);
    return answer;
}

/* ---------------------------------------------------------------- microhttpd callbacks */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *connection,
                                  const char *url, const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    fake_registry_t *fake = cls;
    struct upload *up = *con_cls;
    (void)version;

    if (!up) {
        /* The headers have arrived; the body (if any) comes in the next calls. */
        if (!(up = calloc(1, sizeof *up)))
            return MHD_NO;
        *con_cls = up;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (up->too_large || n > MAX_BODY - up->len) {
            up->too_large = true;
            return MHD_YES;
        }
        char *grown = realloc(up->data, up->len + n + 1);
        if (!grown)
            return MHD_NO;
        memcpy(grown + up->len, upload_data, n);
        up->data = grown;
        up->len += n;
        up->data[up->len] = '\0';
        return MHD_YES;
    }

    pthread_mutex_lock(&fake->lock);
    fake->requests++;
    remember_header(connection, MHD_HTTP_HEADER_CONTENT_TYPE, &fake->last_content_type);
    remember_header(connection, MHD_HTTP_HEADER_AUTHORIZATION, &fake->last_authorization);
    struct answer answer = route(fake, connection, url, method, up);
    pthread_mutex_unlock(&fake->lock);

    if (!answer.body)
        return MHD_NO;
    struct MHD_Response *response = MHD_create_response_from_buffer(
        strlen(answer.body), answer.body, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free(answer.body);
        return MHD_NO;
    }
    enum MHD_Result result = MHD_NO;
    if (MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, answer.content_type) ==
        MHD_YES)
        result = MHD_queue_response(connection, answer.status, response);
    MHD_destroy_response(response);
    return result;
}

static void on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct upload *up = *con_cls;
    (void)cls;
    (void)connection;
    (void)toe;
    if (up) {
        free(up->data);
        free(up);
        *con_cls = NULL;
    }
}

/* ---------------------------------------------------------------- the test's side */

fake_registry_t *fake_registry_start(void)
{
    fake_registry_t *fake = calloc(1, sizeof *fake);
    if (!fake)
        return NULL;
    if (pthread_mutex_init(&fake->lock, NULL) != 0) {
        free(fake);
        return NULL;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fake->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_request,
                                    fake, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                    MHD_OPTION_NOTIFY_COMPLETED, on_completed, fake,
                                    MHD_OPTION_END);
    const union MHD_DaemonInfo *info =
        fake->daemon ? MHD_get_daemon_info(fake->daemon, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    if (!info || !info->port) {
        fake_registry_stop(fake);
        return NULL;
    }
    fake->port = info->port;
    snprintf(fake->url, sizeof fake->url, "http://127.0.0.1:%u", fake->port);
    return fake;
}

void fake_registry_stop(fake_registry_t *fake)
{
    if (!fake)
        return;
    if (fake->daemon)
        MHD_stop_daemon(fake->daemon);
    for (size_t i = 0; i < fake->n_schemas; i++)
        free(fake->schemas[i]);
    free(fake->schemas);
    for (size_t i = 0; i < fake->n_versions; i++)
        free(fake->versions[i].subject);
    free(fake->versions);
    free(fake->last_content_type);
    free(fake->last_authorization);
    pthread_mutex_destroy(&fake->lock);
    free(fake);
}

const char *fake_registry_url(fake_registry_t *fake)
{
    return fake->url;
}

unsigned fake_registry_port(fake_registry_t *fake)
{
    return fake->port;
}

void fake_registry_fail_next(fake_registry_t *fake, int http_status)
{
    pthread_mutex_lock(&fake->lock);
    fake->fail_next = http_status;
    pthread_mutex_unlock(&fake->lock);
}

unsigned fake_registry_requests(fake_registry_t *fake)
{
    pthread_mutex_lock(&fake->lock);
    unsigned requests = fake->requests;
    pthread_mutex_unlock(&fake->lock);
    return requests;
}

unsigned fake_registry_versions(fake_registry_t *fake, const char *subject)
{
    unsigned count = 0;
    pthread_mutex_lock(&fake->lock);
    for (size_t i = 0; i < fake->n_versions; i++)
        count += strcmp(fake->versions[i].subject, subject) == 0;
    pthread_mutex_unlock(&fake->lock);
    return count;
}

bool fake_registry_last_header(fake_registry_t *fake, const char *name, char *buf, size_t size)
{
    bool found = false;
    pthread_mutex_lock(&fake->lock);
    const char *value = strcasecmp(name, "Content-Type") == 0    ? fake->last_content_type
                        : strcasecmp(name, "Authorization") == 0 ? fake->last_authorization
                                                                 : NULL;
    if (value) {
        snprintf(buf, size, "%s", value);
        found = true;
    }
    pthread_mutex_unlock(&fake->lock);
    return found;
}
