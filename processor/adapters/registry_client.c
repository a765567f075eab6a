/*
 * registry_client.c - a client of a Confluent-compatible schema registry over HTTP (libcurl)
 * with JSON bodies (jansson): registers schemas and fetches writer schemas by id, caching
 * both answers for the life of the object.
 *
 * It is not a general REST client: only the two calls registry.h names. One CURL easy handle
 * per registry, so the connection is kept alive between calls; a registry belongs to one
 * thread. The base URL may hold credentials (libcurl sends them as basic auth); only a copy
 * stripped of them is ever logged or put in an error text.
 */
#include "ap/registry.h"

#include <assert.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ap/array.h"
#include "ap/log.h"
#include "ap/strbuf.h"

#define COMPONENT "registry"
#define CONTENT_TYPE "application/vnd.schemaregistry.v1+json"
#define CONNECT_TIMEOUT_MS 5000L
#define TOTAL_TIMEOUT_MS 10000L
/* A schema is a few kilobytes; anything near this is not a registry's answer. */
#define MAX_ANSWER (8u << 20)

struct subject_entry {
    char *subject;
    char *schema;
    int32_t id;
};

struct id_entry {
    int32_t id;
    char *schema;
};

struct ap_registry {
    CURL *curl;
    struct curl_slist *headers;
    char *base;      /* as given, without trailing '/': may hold credentials, never logged */
    char *safe_base; /* the same without user:password@, for logs */
    char errbuf[CURL_ERROR_SIZE];

    /* The current answer's body, reset before each request. */
    ap_strbuf_t body;
    bool body_too_large;

    struct subject_entry *by_subject;
    size_t n_subject, cap_subject;
    struct id_entry *by_id;
    size_t n_id, cap_id;
};

/* ---------------------------------------------------------------- helpers */

static char *dup_n(const char *s, size_t n)
{
    char *copy = malloc(n + 1);
    if (copy) {
        memcpy(copy, s, n);
        copy[n] = '\0';
    }
    return copy;
}

/*
 * The base URL for logs: `url` without user, password and login options. NULL (and
 * AP_ERR_CONFIG) when libcurl cannot parse it or the scheme is not http(s); the caller must
 * not log `url` itself then, as it may hold a password.
 */
static ap_err_t strip_credentials(const char *url, char **out)
{
    ap_err_t err = AP_ERR_CONFIG;
    CURLU *parsed = curl_url();
    char *scheme = NULL, *stripped = NULL;

    if (!parsed)
        return AP_ERR_NOMEM;
    if (curl_url_set(parsed, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(parsed, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
        goto out;
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)
        goto out;
    if (curl_url_set(parsed, CURLUPART_USER, NULL, 0) != CURLUE_OK ||
        curl_url_set(parsed, CURLUPART_PASSWORD, NULL, 0) != CURLUE_OK ||
        curl_url_set(parsed, CURLUPART_OPTIONS, NULL, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(parsed, CURLUPART_URL, &stripped, 0) != CURLUE_OK)
        goto out;
    size_t len = strlen(stripped);
    while (len > 0 && stripped[len - 1] == '/')
        len--;
    *out = dup_n(stripped, len);
    err = *out ? AP_OK : AP_ERR_NOMEM;
out:
    curl_free(stripped);
    curl_free(scheme);
    curl_url_cleanup(parsed);
    return err;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    ap_registry_t *registry = userdata;
    size_t n = size * nmemb;

    if (n > MAX_ANSWER - registry->body.len) {
        registry->body_too_large = true;
        return 0; /* libcurl stops with CURLE_WRITE_ERROR */
    }
    ap_strbuf_add(&registry->body, data, n);
    return registry->body.failed ? 0 : n;
}

/* The current answer's body: "" before anything arrived. */
static const char *answer_text(const ap_registry_t *registry)
{
    return registry->body.buf ? registry->body.buf : "";
}

/*
 * One request on the shared handle: POST `payload` when not NULL, GET otherwise. On AP_OK the
 * answer's status is in *status and its body in answer_text(registry) (NUL-terminated, maybe
 * empty); a request that got no answer logs libcurl's text and gives AP_ERR_UNAVAILABLE.
 * `path` is logged, so it must hold no secret.
 */
static ap_err_t perform(ap_registry_t *registry, const char *path, const char *payload,
                        long *status)
{
    const char *method = payload ? "POST" : "GET";
    char *url = NULL;
    ap_err_t err = AP_ERR_NOMEM;
    size_t url_len = strlen(registry->base) + strlen(path) + 1;

    url = malloc(url_len);
    if (!url)
        goto out;
    snprintf(url, url_len, "%s%s", registry->base, path);

    ap_strbuf_reset(&registry->body);
    registry->body_too_large = false;
    registry->errbuf[0] = '\0';

    CURL *curl = registry->curl;
    if (curl_easy_setopt(curl, CURLOPT_URL, url) != CURLE_OK)
        goto out;
    if (payload) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(payload));
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
    } else {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    }

    CURLcode rc = curl_easy_perform(curl);
    /* The handle must not keep a pointer to the caller's payload past this call. */
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, NULL);
    if (rc != CURLE_OK) {
        const char *text = registry->body_too_large ? "answer larger than the limit"
                           : registry->errbuf[0]    ? registry->errbuf
                                                    : curl_easy_strerror(rc);
        AP_WARN(COMPONENT, "%s %s%s: %s", method, registry->safe_base, path, text);
        err = AP_ERR_UNAVAILABLE;
        goto out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    AP_DEBUG(COMPONENT, "%s %s%s -> %ld", method, registry->safe_base, path, *status);
    err = AP_OK;
out:
    free(url);
    return err;
}

/* ---------------------------------------------------------------- answers */

void ap_registry_answer_refusal(const char *body, size_t len, long status, char *why,
                                size_t whylen)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *message = root ? json_object_get(root, "message") : NULL;
    json_t *code = root ? json_object_get(root, "error_code") : NULL;

    if (json_is_string(message) && json_is_integer(code))
        AP_SAY(why, whylen, "%s (HTTP %ld, error_code %" JSON_INTEGER_FORMAT ")",
               json_string_value(message), status, json_integer_value(code));
    else if (json_is_string(message))
        AP_SAY(why, whylen, "%s (HTTP %ld)", json_string_value(message), status);
    else
        AP_SAY(why, whylen, "the registry answered HTTP %ld without a message", status);
    json_decref(root);
}

ap_err_t ap_registry_answer_id(const char *body, size_t len, int32_t *id)
{
    json_t *answer = json_loadb(body, len, 0, NULL);
    json_t *member = answer ? json_object_get(answer, "id") : NULL;
    ap_err_t err = AP_ERR_UNAVAILABLE;

    if (json_is_integer(member) && json_integer_value(member) >= 0 &&
        json_integer_value(member) <= INT32_MAX) {
        *id = (int32_t)json_integer_value(member);
        err = AP_OK;
    }
    json_decref(answer);
    return err;
}

ap_err_t ap_registry_answer_schema(const char *body, size_t len, char **schema_json)
{
    json_t *answer = json_loadb(body, len, 0, NULL);
    json_t *member = answer ? json_object_get(answer, "schema") : NULL;
    ap_err_t err = AP_ERR_UNAVAILABLE;

    /* A schema with a NUL inside would be cut short by every C caller. */
    if (json_is_string(member) &&
        strlen(json_string_value(member)) == json_string_length(member)) {
        char *copy = dup_n(json_string_value(member), json_string_length(member));
        err = copy ? AP_OK : AP_ERR_NOMEM;
        if (copy)
            *schema_json = copy;
    }
    json_decref(answer);
    return err;
}

/* Maps a non-2xx status: the registry's refusal, or its failure. Logs once either way. */
static ap_err_t status_error(const ap_registry_t *registry, const char *what, long status,
                             char *why, size_t whylen)
{
    char text[512];

    ap_registry_answer_refusal(answer_text(registry), registry->body.len, status, text,
                               sizeof text);
    AP_SAY(why, whylen, "%s", text);
    /* 408 (timeout) and 429 (rate limit) say "not now", not "no": try again later. */
    if (status >= 400 && status < 500 && status != 408 && status != 429) {
        AP_WARN(COMPONENT, "%s at %s refused: %s", what, registry->safe_base, text);
        return AP_ERR_CONFIG;
    }
    AP_WARN(COMPONENT, "%s at %s failed: %s", what, registry->safe_base, text);
    return AP_ERR_UNAVAILABLE;
}

/* ---------------------------------------------------------------- lifecycle */

ap_err_t ap_registry_new(const char *url, ap_registry_t **out)
{
    ap_registry_t *registry = NULL;
    ap_err_t err;

    assert(url && out);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        AP_ERROR(COMPONENT, "libcurl does not initialise");
        return AP_ERR_INTERNAL;
    }
    registry = calloc(1, sizeof *registry);
    if (!registry) {
        err = AP_ERR_NOMEM;
        goto out;
    }
    err = strip_credentials(url, &registry->safe_base);
    if (err) {
        /* Not the URL itself: it may hold a password. */
        if (err == AP_ERR_CONFIG)
            AP_ERROR(COMPONENT, "the registry URL is not an http(s) URL");
        goto out;
    }
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    err = AP_ERR_NOMEM;
    if (!(registry->base = dup_n(url, len)))
        goto out;
    if (!(registry->curl = curl_easy_init()))
        goto out;
    struct curl_slist *headers = NULL, *next;
    static const char *const lines[] = {
        "Content-Type: " CONTENT_TYPE,
        "Accept: " CONTENT_TYPE ", application/vnd.schemaregistry+json; q=0.9, "
        "application/json; q=0.5",
        "Expect:", /* no 100-continue round trip for large schemas */
    };
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
        if (!(next = curl_slist_append(headers, lines[i]))) {
            curl_slist_free_all(headers);
            goto out;
        }
        headers = next;
    }
    registry->headers = headers;

    CURL *curl = registry->curl;
    if (curl_easy_setopt(curl, CURLOPT_HTTPHEADER, registry->headers) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, registry) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, registry->errbuf) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, TOTAL_TIMEOUT_MS) != CURLE_OK ||
        /* Other threads (librdkafka's) own the signals; timeouts must not use SIGALRM. */
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "allocation-processor/" AP_VERSION) !=
            CURLE_OK) {
        err = AP_ERR_INTERNAL;
        AP_ERROR(COMPONENT, "libcurl refuses an option");
        goto out;
    }
    AP_INFO(COMPONENT, "schema registry at %s", registry->safe_base);
    *out = registry;
    registry = NULL;
    err = AP_OK;
out:
    if (registry)
        ap_registry_free(registry); /* also balances curl_global_init */
    else if (err)
        curl_global_cleanup();
    return err;
}

void ap_registry_free(ap_registry_t *registry)
{
    if (!registry)
        return;
    if (registry->curl)
        curl_easy_cleanup(registry->curl);
    curl_slist_free_all(registry->headers);
    for (size_t i = 0; i < registry->n_subject; i++) {
        free(registry->by_subject[i].subject);
        free(registry->by_subject[i].schema);
    }
    free(registry->by_subject);
    for (size_t i = 0; i < registry->n_id; i++)
        free(registry->by_id[i].schema);
    free(registry->by_id);
    ap_strbuf_release(&registry->body);
    free(registry->base);
    free(registry->safe_base);
    free(registry);
    curl_global_cleanup();
}

/* ---------------------------------------------------------------- calls */

ap_err_t ap_registry_register(ap_registry_t *registry, const char *subject,
                              const char *schema_json, int32_t *id, char *why, size_t whylen)
{
    char *escaped = NULL, *path = NULL, *payload = NULL;
    json_t *request = NULL;
    ap_err_t err = AP_ERR_NOMEM;
    long status = 0;

    assert(registry && subject && schema_json && id);
    for (size_t i = 0; i < registry->n_subject; i++) {
        const struct subject_entry *entry = &registry->by_subject[i];
        if (strcmp(entry->subject, subject) == 0 && strcmp(entry->schema, schema_json) == 0) {
            *id = entry->id;
            return AP_OK;
        }
    }

    /* Subjects are free text: one with '/' or '?' must stay one path segment. */
    escaped = curl_easy_escape(registry->curl, subject, 0);
    if (!escaped)
        goto out;
    size_t path_len = strlen("/subjects//versions") + strlen(escaped) + 1;
    if (!(path = malloc(path_len)))
        goto out;
    snprintf(path, path_len, "/subjects/%s/versions", escaped);
    request = json_pack("{s:s}", "schema", schema_json);
    if (!request) {
        /* jansson refuses strings that are not UTF-8. */
        AP_SAY(why, whylen, "the schema for subject %s is not valid UTF-8", subject);
        err = AP_ERR_CONFIG;
        goto out;
    }
    if (!(payload = json_dumps(request, JSON_COMPACT)))
        goto out;

    if ((err = perform(registry, path, payload, &status)))
        goto out;
    if (status < 200 || status > 299) {
        char what[300];
        snprintf(what, sizeof what, "registering subject %s", subject);
        err = status_error(registry, what, status, why, whylen);
        goto out;
    }
    int32_t got;
    if (ap_registry_answer_id(answer_text(registry), registry->body.len, &got) != AP_OK) {
        AP_SAY(why, whylen, "the registry's answer to registering subject %s has no valid id",
               subject);
        AP_WARN(COMPONENT, "POST %s%s -> %ld with no valid id", registry->safe_base, path,
                status);
        err = AP_ERR_UNAVAILABLE;
        goto out;
    }
    err = AP_ERR_NOMEM;
    if (!AP_ARRAY_RESERVE(registry->by_subject, registry->cap_subject, registry->n_subject + 1))
        goto out;
    struct subject_entry entry = {strdup(subject), strdup(schema_json), got};
    if (!entry.subject || !entry.schema) {
        free(entry.subject);
        free(entry.schema);
        goto out;
    }
    registry->by_subject[registry->n_subject++] = entry;
    AP_INFO(COMPONENT, "subject %s: schema id %" PRId32, subject, got);
    *id = got;
    err = AP_OK;
out:
    if (err == AP_ERR_NOMEM)
        AP_SAY(why, whylen, "out of memory");
    json_decref(request);
    free(payload);
    free(path);
    curl_free(escaped);
    return err;
}

ap_err_t ap_registry_schema_by_id(ap_registry_t *registry, int32_t id, char **schema_json)
{
    char path[64], *copy = NULL;
    ap_err_t err;
    long status = 0;

    assert(registry && schema_json);
    if (id < 0)
        return AP_ERR_NOT_FOUND; /* registries number schemas from 0 or 1 up */
    for (size_t i = 0; i < registry->n_id; i++) {
        if (registry->by_id[i].id == id) {
            if (!(copy = strdup(registry->by_id[i].schema)))
                return AP_ERR_NOMEM;
            *schema_json = copy;
            return AP_OK;
        }
    }

    snprintf(path, sizeof path, "/schemas/ids/%" PRId32, id);
    if ((err = perform(registry, path, NULL, &status)))
        return err;
    if (status == 404) {
        AP_DEBUG(COMPONENT, "schema id %" PRId32 " is not in the registry", id);
        return AP_ERR_NOT_FOUND;
    }
    if (status < 200 || status > 299) {
        char what[64];
        snprintf(what, sizeof what, "fetching schema id %" PRId32, id);
        return status_error(registry, what, status, NULL, 0);
    }
    struct id_entry entry = {id, NULL};
    err = ap_registry_answer_schema(answer_text(registry), registry->body.len, &entry.schema);
    if (err == AP_ERR_UNAVAILABLE)
        AP_WARN(COMPONENT, "GET %s%s -> %ld with no schema string", registry->safe_base, path,
                status);
    if (err)
        return err;
    if (!AP_ARRAY_RESERVE(registry->by_id, registry->cap_id, registry->n_id + 1) ||
        !(copy = strdup(entry.schema))) {
        free(entry.schema);
        return AP_ERR_NOMEM;
    }
    registry->by_id[registry->n_id++] = entry;
    *schema_json = copy;
    return AP_OK;
}
