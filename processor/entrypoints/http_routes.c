/*
 * http_routes.c - the HTTP API's routes (http_routes.h), on the server adapter of http.h.
 *
 *   POST /add_batch, /allocate     validate, produce to the command topic keyed by sku with a
 *                                  message-id (Idempotency-Key, or a new UUID), then wait for
 *                                  the outcome the consumer records in the same transaction
 *   GET  /commands/{id}            that outcome, later
 *   GET  /allocations/{orderid}    the read model
 *   GET  /healthz, /readyz         probes
 *   GET  /metrics                  Prometheus text format
 *
 * The API never applies a command itself: HTTP and kcat commands take one path, in one order
 * per sku, and are applied exactly once per message id. Every answer is JSON but /metrics.
 */
#include "entrypoints/http_routes.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ap/codec.h"
#include "ap/denial.h"
#include "ap/http.h"
#include "ap/log.h"
#include "ap/pg.h"
#include "ap/uuid.h"

#define LIVENESS_STALL_MS 60000 /* a consumer loop silent this long is not alive */

struct ap_http_api {
    ap_http_api_deps_t deps;
    ap_http_server_t *server;
    _Atomic(ap_relay_t *) relay;
    _Atomic(ap_email_sender_t *) email;
    pthread_mutex_t views_mutex; /* the views port belongs to one thread at a time */
    ap_views_t *views;           /* connected on first use */
};

/* ---------------------------------------------------------------- answers */

static void reply_json(ap_http_response_t *res, int status, json_t *body)
{
    res->status = status;
    res->body = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    res->body_len = res->body ? strlen(res->body) : 0;
    if (body && !res->body)
        res->status = 500;
    json_decref(body);
}

static void reply_message(ap_http_response_t *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_message(ap_http_response_t *res, int status, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    json_t *body = json_object();
    json_object_set_new(body, "message", json_string(text));
    reply_json(res, status, body);
}

/* ---------------------------------------------------------------- access */

bool ap_http_token_equal(const char *presented, const char *expected)
{
    size_t plen = strlen(presented), elen = strlen(expected);
    /* Every byte of the expected token is looked at whatever the input: no early exit. */
    unsigned char diff = (unsigned char)(plen != elen);
    for (size_t i = 0; i < elen; i++)
        diff |= (unsigned char)(expected[i] ^ (i < plen ? presented[i] : 0));
    return diff == 0;
}

static bool authorised(const ap_http_request_t *req, const char *token)
{
    if (!token)
        return true;
    const char *header = ap_http_request_header(req, "Authorization");
    if (!header || strncasecmp(header, "Bearer ", 7) != 0)
        return false;
    return ap_http_token_equal(header + 7, token);
}

/* ---------------------------------------------------------------- outcomes as answers */

/* The batch an already-allocated line went to, from the read model ("" when unknown). */
static void find_batchref(ap_http_api_t *api, const char *orderid, const char *sku,
                          char batchref[AP_STR_SIZE])
{
    ap_allocation_row_t *rows = NULL;
    size_t nrows = 0;
    batchref[0] = '\0';
    pthread_mutex_lock(&api->views_mutex);
    if (!api->views)
        ap_pg_views_new(api->deps.cfg->database_url, &api->views);
    if (api->views && ap_views_allocations(api->views, orderid, &rows, &nrows) == AP_OK) {
        for (size_t i = 0; i < nrows; i++) {
            if (strcmp(rows[i].sku, sku) == 0)
                memcpy(batchref, rows[i].batchref, AP_STR_SIZE);
        }
    }
    pthread_mutex_unlock(&api->views_mutex);
    free(rows);
}

/* The status and body a command's outcome answers with (the book's, where it has one). */
static int outcome_answer(ap_http_api_t *api, const ap_command_outcome_t *o, const ap_msg_t *cmd,
                          json_t **body)
{
    *body = json_object();
    switch (o->kind) {
    case AP_OUTCOME_APPLIED:
        if (strcmp(o->command_type, "Allocate") != 0) {
            json_object_set_new(*body, "message", json_string("OK"));
            return strcmp(o->command_type, "CreateBatch") == 0 ? 201 : 200;
        }
        if (o->out_of_stock) {
            json_object_set_new(*body, "batchref", json_null());
            json_object_set_new(*body, "message", json_string("Out of stock"));
            return 202;
        }
        char batchref[AP_STR_SIZE];
        snprintf(batchref, sizeof batchref, "%s", o->batchref);
        /* The identical line was allocated already: no event said where, the view does. */
        if (!batchref[0] && cmd)
            find_batchref(api, cmd->orderid, cmd->sku, batchref);
        json_object_set_new(*body, "batchref", batchref[0] ? json_string(batchref) : json_null());
        return 202;
    case AP_OUTCOME_REJECTED:
    case AP_OUTCOME_DEAD_LETTERED:
        json_object_set_new(*body, "message", json_string(o->message));
        return 400;
    case AP_OUTCOME_FAILED:
    default:
        json_object_set_new(*body, "message", json_string(o->message));
        return 500;
    }
}

static void reply_outcome(ap_http_api_t *api, ap_http_response_t *res,
                          const ap_command_outcome_t *o, const ap_msg_t *cmd)
{
    json_t *body;
    int status = outcome_answer(api, o, cmd, &body);
    reply_json(res, status, body);
}

/* ---------------------------------------------------------------- commands */

/* A UUIDv4; should the kernel give no random bytes, the clock's, which still differ per
 * request. */
static void new_message_id(char id[AP_STR_SIZE])
{
    if (ap_uuid4_random(id) == AP_OK)
        return;
    unsigned char b[16] = {0};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    memcpy(b, &ts, sizeof ts < sizeof b ? sizeof ts : sizeof b);
    ap_uuid4_format(b, id);
}

/* A header value fit to be an id: 1-255 printable ASCII bytes. */
static bool valid_id(const char *text)
{
    size_t len = strlen(text);
    if (len == 0 || len > AP_STR_MAX)
        return false;
    for (const char *p = text; *p; p++) {
        if (*p < 0x21 || *p > 0x7e)
            return false;
    }
    return true;
}

ap_err_t ap_http_parse_command(const char *body, size_t len, ap_msg_type_t type, ap_msg_t *cmd,
                               char *why, size_t whylen)
{
    ap_err_t err = ap_command_decode_json(body, len, type, true, cmd, why, whylen);
    if (err == AP_OK)
        err = ap_command_validate(cmd, why, whylen);
    if (err == AP_OK && cmd->qty <= 0) {
        snprintf(why, whylen, "field qty must be a positive integer");
        err = AP_ERR_INVALID_COMMAND;
    }
    return err;
}

/* Copies header `name` into `dst` when it is fit to be an id; false when absent or unfit. */
static bool id_header(const ap_http_request_t *req, const char *name, char dst[AP_STR_SIZE])
{
    const char *value = ap_http_request_header(req, name);
    dst[0] = '\0';
    if (!value || !valid_id(value))
        return false;
    memcpy(dst, value, strlen(value) + 1);
    return true;
}

int ap_http_read_command(const ap_http_request_t *req, const char *token, ap_msg_type_t type,
                         ap_http_command_request_t *out, char *why, size_t whylen)
{
    if (!authorised(req, token)) {
        snprintf(why, whylen, "missing or wrong bearer token (Authorization: Bearer ...)");
        return 401;
    }
    if (req->body_too_large) {
        snprintf(why, whylen, "request body over %d bytes", AP_HTTP_MAX_BODY);
        return 413;
    }
    if (!id_header(req, "Idempotency-Key", out->key) &&
        ap_http_request_header(req, "Idempotency-Key")) {
        snprintf(why, whylen, "header Idempotency-Key must be 1-%d printable ASCII characters",
                 AP_STR_MAX);
        return 400;
    }
    why[0] = '\0';
    if (ap_http_parse_command(req->body, req->body_len, type, &out->cmd, why, whylen)) {
        if (!why[0])
            snprintf(why, whylen, "invalid request body");
        return 400;
    }
    id_header(req, "X-Correlation-ID", out->correlation_id);
    id_header(req, "traceparent", out->traceparent);
    return 0;
}

static void post_command(ap_http_api_t *api, const ap_http_request_t *req, ap_msg_type_t type,
                         ap_http_response_t *res)
{
    const ap_http_api_deps_t *deps = &api->deps;
    char message_id[AP_STR_SIZE], correlation_id[AP_STR_SIZE], why[512];
    ap_http_command_request_t in;
    ap_command_outcome_t outcome;
    const ap_msg_t *cmd = &in.cmd;
    char *value = NULL;
    ap_err_t err;

    int refusal = ap_http_read_command(req, deps->cfg->http_auth_token, type, &in, why,
                                       sizeof why);
    if (refusal) {
        reply_message(res, refusal, "%s", why);
        return;
    }
    bool key = in.key[0] != '\0';
    if (key)
        memcpy(message_id, in.key, sizeof message_id);
    else
        new_message_id(message_id);
    memcpy(correlation_id, in.correlation_id[0] ? in.correlation_id : message_id,
           sizeof correlation_id);
    ap_log_context_set(correlation_id, message_id);

    /* Postgres away: the command would wait in Kafka and the client would learn nothing. */
    if (!atomic_load(&deps->health->database) || ap_outcome_store_ping(deps->outcomes, NULL)) {
        reply_message(res, 503, "Postgres is unavailable; try again later");
        goto out;
    }
    /* A repeated key answers with the first outcome, without producing again. */
    if (key && (err = ap_outcome_store_get(deps->outcomes, message_id, &outcome)) != AP_ERR_NOT_FOUND) {
        if (err)
            reply_message(res, 503, "Postgres is unavailable; try again later");
        else
            reply_outcome(api, res, &outcome, cmd);
        goto out;
    }
    if (!ap_command_gateway_reachable(deps->gateway)) {
        reply_message(res, 503, "Kafka is unavailable; try again later");
        goto out;
    }
    if ((err = ap_command_encode_json(cmd, &value))) {
        reply_message(res, 500, "%s", ap_strerror(err));
        goto out;
    }
    ap_header_t headers[3] = {
        {"message-id", 10, message_id, strlen(message_id)},
        {"correlation-id", 14, correlation_id, strlen(correlation_id)},
    };
    size_t nheaders = 2;
    if (in.traceparent[0])
        headers[nheaders++] = (ap_header_t){"traceparent", 11, in.traceparent,
                                            strlen(in.traceparent)};
    AP_DEBUG("http", "%s for sku %s: producing", ap_msg_type_name(cmd->type), cmd->sku);
    err = ap_command_gateway_send(deps->gateway, deps->cfg->command_topics[0], cmd->sku, value,
                                  headers, nheaders);
    if (err) {
        json_t *body = json_object();
        json_object_set_new(body, "message",
                            json_string("Kafka is unavailable; the command may or may not have "
                                        "been taken: repeat it with the same Idempotency-Key"));
        json_object_set_new(body, "message_id", json_string(message_id));
        reply_json(res, err == AP_ERR_UNAVAILABLE ? 503 : 500, body);
        goto out;
    }
    err = ap_outcome_store_wait(deps->outcomes, message_id, deps->cfg->http_command_wait_ms,
                                &outcome);
    if (err == AP_OK) {
        reply_outcome(api, res, &outcome, cmd);
        goto out;
    }
    /* Not known in time (or Postgres went away meanwhile): it is in the log, and will be
     * applied; the client asks later. */
    json_t *body = json_object();
    json_object_set_new(body, "status", json_string("pending"));
    json_object_set_new(body, "message_id", json_string(message_id));
    snprintf(res->location, sizeof res->location, "/commands/%s", message_id);
    reply_json(res, 202, body);
    AP_INFO("http", "%s for sku %s: outcome not known within %d ms; answered pending",
            ap_msg_type_name(cmd->type), cmd->sku, deps->cfg->http_command_wait_ms);
out:
    ap_log_context_clear();
    free(value);
}

static void get_command(ap_http_api_t *api, const char *id, ap_http_response_t *res)
{
    ap_command_outcome_t o;
    ap_err_t err = ap_outcome_store_get(api->deps.outcomes, id, &o);
    if (err == AP_ERR_NOT_FOUND) {
        reply_message(res, 404, "no outcome recorded for command %s (unknown, or not applied yet)",
                      id);
        return;
    }
    if (err) {
        reply_message(res, 503, "Postgres is unavailable; try again later");
        return;
    }
    json_t *answer;
    int status = outcome_answer(api, &o, NULL, &answer);
    json_t *body = json_object();
    json_object_set_new(body, "message_id", json_string(o.message_id));
    json_object_set_new(body, "command", o.command_type[0] ? json_string(o.command_type)
                                                           : json_null());
    json_object_set_new(body, "outcome", json_string(ap_outcome_kind_name(o.kind)));
    if (o.reason[0])
        json_object_set_new(body, "reason", json_string(o.reason));
    json_object_set_new(body, "status", json_integer(status));
    json_object_set_new(body, "body", answer);
    reply_json(res, 200, body);
}

/* ---------------------------------------------------------------- queries */

json_t *ap_http_allocations_json(const ap_allocation_row_t *rows, size_t nrows)
{
    json_t *array = json_array();
    for (size_t i = 0; i < nrows; i++) {
        json_t *row = json_object();
        json_object_set_new(row, "sku", json_string(rows[i].sku));
        json_object_set_new(row, "batchref", json_string(rows[i].batchref));
        json_array_append_new(array, row);
    }
    return array;
}

static void get_allocations(ap_http_api_t *api, const char *orderid, ap_http_response_t *res)
{
    ap_allocation_row_t *rows = NULL;
    size_t nrows = 0;
    ap_err_t err = AP_ERR_UNAVAILABLE;

    pthread_mutex_lock(&api->views_mutex);
    if (!api->views)
        ap_pg_views_new(api->deps.cfg->database_url, &api->views);
    if (api->views)
        err = ap_views_allocations(api->views, orderid, &rows, &nrows);
    pthread_mutex_unlock(&api->views_mutex);
    if (err == AP_ERR_NOT_FOUND) {
        reply_message(res, 404, "not found");
    } else if (err) {
        reply_message(res, 503, "Postgres is unavailable; try again later");
    } else {
        reply_json(res, 200, ap_http_allocations_json(rows, nrows));
    }
    free(rows);
}

/* ---------------------------------------------------------------- probes and metrics */

/*
 * Alive while every loop of the process goes round: the consumer, and once started the
 * outbox relay and the email sender. A loop that naps on purpose (a backoff) counts as alive;
 * one silent for LIVENESS_STALL_MS is stuck, and a restart is the cure.
 */
/* What the relay and the email sender report now. A loop that does not run (not started yet,
 * or stopping) reports nothing: its `runs` flag is false and its stats are zero (silent 0 ms,
 * no refusals). */
typedef struct {
    bool relay_runs, email_runs;
    ap_relay_stats_t relay;
    ap_email_sender_stats_t email;
} loop_stats_t;

static void loop_stats(ap_http_api_t *api, loop_stats_t *now)
{
    ap_relay_t *relay = atomic_load(&api->relay);
    ap_email_sender_t *email = atomic_load(&api->email);
    *now = (loop_stats_t){.relay_runs = relay != NULL, .email_runs = email != NULL};
    if (relay)
        ap_relay_stats(relay, &now->relay);
    if (email)
        ap_email_sender_stats(email, &now->email);
}

static void get_healthz(ap_http_api_t *api, ap_http_response_t *res)
{
    loop_stats_t now;
    loop_stats(api, &now);
    const struct {
        const char *name;
        int64_t silent_ms;
    } loops[] = {
        {"consumer", ap_health_now_ms() - atomic_load(&api->deps.health->heartbeat_ms)},
        {"relay", now.relay.silent_ms},
        {"email_sender", now.email.silent_ms},
    };
    json_t *body = json_object(), *stalled = json_array();
    for (size_t i = 0; i < sizeof loops / sizeof *loops; i++) {
        if (loops[i].silent_ms >= LIVENESS_STALL_MS)
            json_array_append_new(stalled, json_string(loops[i].name));
    }
    bool ok = json_array_size(stalled) == 0;
    json_object_set_new(body, "status", json_string(ok ? "alive" : "stalled"));
    if (ok)
        json_decref(stalled);
    else
        json_object_set_new(body, "stalled", stalled);
    reply_json(res, ok ? 200 : 503, body);
}

/* What is wrong with Postgres as /readyz and allocation_postgres_fault see it: a refusal of
 * our credentials or certificate first (its words in `denied`, else ""), then the consumer's
 * last transaction, then this side's own check (which sees a read-only server even while no
 * command flows). AP_FAULT_NONE when it is ready. */
static ap_fault_t postgres_fault(ap_http_api_t *api, char *denied, size_t size)
{
    ap_fault_t fault = AP_FAULT_NONE;
    denied[0] = '\0';
    switch (ap_denial_get(AP_SERVICE_POSTGRES, denied, size)) {
    case AP_DENIAL_AUTHENTICATION:
        return AP_FAULT_AUTHENTICATION;
    case AP_DENIAL_TLS:
        return AP_FAULT_TLS;
    case AP_DENIAL_NONE:
        break;
    }
    denied[0] = '\0';
    if (!atomic_load(&api->deps.health->database))
        return (ap_fault_t)atomic_load(&api->deps.health->database_fault);
    if (ap_outcome_store_ping(api->deps.outcomes, &fault) == AP_OK)
        return AP_FAULT_NONE;
    return fault == AP_FAULT_NONE ? AP_FAULT_UNREACHABLE : fault;
}

/* The relay's complaint, if any: a topic refusing events ("" when none). */
static void relay_trouble(const ap_relay_stats_t *stats, char *why, size_t size)
{
    why[0] = '\0';
    if (stats->refused_rows > 0)
        snprintf(why, size, "%s: %s", ap_fault_text(AP_FAULT_TOO_LARGE), stats->refused_reason);
}

static void get_readyz(ap_http_api_t *api, ap_http_response_t *res)
{
    const ap_health_t *health = api->deps.health;
    /* A service that turns us away (a password, a certificate) says why (ap/denial.h); any
     * other fault of Postgres's is named by postgres_fault. */
    char denied_pg[600], denied_kafka[600], relay_why[320];
    ap_fault_t pg = postgres_fault(api, denied_pg, sizeof denied_pg);
    bool kafka_denied = ap_denial_get(AP_SERVICE_KAFKA, denied_kafka, sizeof denied_kafka) !=
                        AP_DENIAL_NONE;
    loop_stats_t now;
    loop_stats(api, &now);
    relay_trouble(&now.relay, relay_why, sizeof relay_why);
    bool kafka = !kafka_denied && atomic_load(&health->kafka) &&
                 ap_command_gateway_reachable(api->deps.gateway);
    struct {
        const char *name;
        bool ok;
        const char *why; /* said under "reasons" when not ok */
    } checks[] = {
        {"postgres", pg == AP_FAULT_NONE, denied_pg[0] ? denied_pg : ap_fault_text(pg)},
        {"kafka", kafka, kafka_denied ? denied_kafka : "no broker answers"},
        {"consumer_group", atomic_load(&health->joined), "not a member of its group yet"},
        {"relay", relay_why[0] == '\0', relay_why},
    };
    json_t *body = json_object(), *not_ready = json_array(), *reasons = json_object();
    bool ready = true;
    for (size_t i = 0; i < sizeof checks / sizeof *checks; i++) {
        json_object_set_new(body, checks[i].name, json_boolean(checks[i].ok));
        if (!checks[i].ok) {
            ready = false;
            json_array_append_new(not_ready, json_string(checks[i].name));
            json_object_set_new(reasons, checks[i].name, json_string(checks[i].why));
        }
    }
    json_object_set_new(body, "status", json_string(ready ? "ready" : "not ready"));
    json_object_set_new(body, "not_ready", not_ready);
    json_object_set_new(body, "reasons", reasons);
    reply_json(res, ready ? 200 : 503, body);
}

/* Collector: the loops' flags and the relay's counts, read at scrape time. */
static void collect_health(void *ctx)
{
    ap_http_api_t *api = ctx;
    const ap_instruments_t *ins = api->deps.ins;
    const ap_health_t *health = api->deps.health;
    ap_metric_set(ins->backpressure, atomic_load(&health->backpressure));
    /* The same judgement as /readyz: a refusal, the loop's flag and this side's session. */
    char denied[600];
    ap_fault_t pg = postgres_fault(api, denied, sizeof denied);
    ap_metric_set(ins->postgres_up, pg == AP_FAULT_NONE);
    for (int f = AP_FAULT_UNREACHABLE; f < AP_FAULT_TOO_LARGE; f++)
        ap_metric_set(ins->postgres_fault, pg == (ap_fault_t)f, ap_fault_label((ap_fault_t)f));
    ap_metric_set(ins->kafka_up, ap_denial_get(AP_SERVICE_KAFKA, NULL, 0) == AP_DENIAL_NONE &&
                                     atomic_load(&health->kafka) &&
                                     ap_command_gateway_reachable(api->deps.gateway));
    ap_metric_set(ins->consumer_joined, atomic_load(&health->joined));
    /* A loop that does not run leaves its counts as last scraped, rather than fall to 0. */
    loop_stats_t now;
    loop_stats(api, &now);
    if (now.relay_runs) {
        ap_metric_set(ins->relay_delivered, (double)now.relay.delivered);
        ap_metric_set(ins->relay_failures, (double)now.relay.failed);
        ap_metric_set(ins->relay_parked, (double)now.relay.parked);
        ap_metric_set(ins->relay_refused, (double)now.relay.refused);
        ap_metric_set(ins->relay_refused_rows, (double)now.relay.refused_rows);
        ap_metric_set(ins->relay_leader, now.relay.leader);
    }
    if (now.email_runs) {
        ap_metric_set(ins->email_delivered, (double)now.email.delivered);
        ap_metric_set(ins->email_failures, (double)now.email.failed);
        ap_metric_set(ins->email_logged, (double)now.email.logged);
    }
}

static void get_metrics(ap_http_api_t *api, ap_http_response_t *res)
{
    size_t len;
    if (!ap_metrics_render(api->deps.ins->registry, &res->body, &len)) {
        res->status = 500;
        return;
    }
    res->status = 200;
    res->body_len = len;
    res->content_type = AP_METRICS_CONTENT_TYPE;
}

/* ---------------------------------------------------------------- routing */

/* The rest of `path` after `prefix` when it is one non-empty segment, else NULL. */
static const char *segment_after(const char *path, const char *prefix)
{
    size_t len = strlen(prefix);
    if (strncmp(path, prefix, len) != 0 || path[len] == '\0' || strchr(path + len, '/'))
        return NULL;
    return path + len;
}

static void handle(void *ctx, const ap_http_request_t *req, ap_http_response_t *res)
{
    ap_http_api_t *api = ctx;
    int64_t started = ap_health_now_ms();
    const char *path = req->path, *arg = NULL, *route, *allow;
    bool post = strcmp(req->method, "POST") == 0;
    bool get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;

    if (strcmp(path, "/add_batch") == 0 || strcmp(path, "/allocate") == 0) {
        route = path;
        allow = "POST";
    } else if ((arg = segment_after(path, "/commands/"))) {
        route = "/commands/{id}";
        allow = "GET, HEAD";
    } else if ((arg = segment_after(path, "/allocations/"))) {
        route = "/allocations/{orderid}";
        allow = "GET, HEAD";
    } else if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
               strcmp(path, "/metrics") == 0) {
        route = path;
        allow = "GET, HEAD";
    } else {
        route = "other";
        allow = NULL;
    }

    if (!allow) {
        reply_message(res, 404, "no such path: %s", path);
    } else if (strcmp(allow, "POST") == 0 ? !post : !get) {
        snprintf(res->allow, sizeof res->allow, "%s", allow);
        reply_message(res, 405, "%s takes %s", route, allow);
    } else if (strcmp(route, "/add_batch") == 0) {
        post_command(api, req, AP_CMD_CREATE_BATCH, res);
    } else if (strcmp(route, "/allocate") == 0) {
        post_command(api, req, AP_CMD_ALLOCATE, res);
    } else if (strcmp(route, "/commands/{id}") == 0) {
        get_command(api, arg, res);
    } else if (strcmp(route, "/allocations/{orderid}") == 0) {
        get_allocations(api, arg, res);
    } else if (strcmp(route, "/healthz") == 0) {
        get_healthz(api, res);
    } else if (strcmp(route, "/readyz") == 0) {
        get_readyz(api, res);
    } else {
        get_metrics(api, res);
    }

    char code[8];
    snprintf(code, sizeof code, "%d", res->status);
    ap_metric_add(api->deps.ins->http_requests, 1, route, code);
    ap_metric_observe(api->deps.ins->http_duration,
                      (double)(ap_health_now_ms() - started) / 1e3, route);
    AP_DEBUG("http", "%s %s: %d", req->method, path, res->status);
}

ap_err_t ap_http_api_start(const ap_http_api_deps_t *deps, ap_http_api_t **out)
{
    ap_http_api_t *api = calloc(1, sizeof *api);
    if (!api)
        return AP_ERR_NOMEM;
    api->deps = *deps;
    pthread_mutex_init(&api->views_mutex, NULL);
    ap_metrics_on_collect(deps->ins->registry, collect_health, api);
    ap_err_t err = ap_http_server_start(deps->cfg->http_addr, AP_HTTP_MAX_BODY, handle, api,
                                        &api->server);
    if (err) {
        pthread_mutex_destroy(&api->views_mutex);
        free(api);
        return err;
    }
    AP_INFO("http", "listening on %s (port %d)%s", deps->cfg->http_addr,
            ap_http_server_port(api->server),
            deps->cfg->http_auth_token ? "; commands need a bearer token" : "");
    *out = api;
    return AP_OK;
}

void ap_http_api_set_relay(ap_http_api_t *api, ap_relay_t *relay)
{
    atomic_store(&api->relay, relay);
}

void ap_http_api_set_email_sender(ap_http_api_t *api, ap_email_sender_t *email)
{
    atomic_store(&api->email, email);
}

void ap_http_api_stop(ap_http_api_t *api)
{
    if (!api)
        return;
    ap_http_server_stop(api->server);
    ap_views_free(api->views);
    pthread_mutex_destroy(&api->views_mutex);
    free(api);
}
