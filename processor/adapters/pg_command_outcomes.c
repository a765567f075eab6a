/*
 * pg_command_outcomes.c - the command_outcomes table on PostgreSQL (outcomes.h): written in
 * the consumer's transaction through the unit of work, read by the HTTP side on connections
 * of its own.
 *
 * Waiting is driven by LISTEN/NOTIFY: the table's statement trigger notifies
 * "command_outcomes" at commit, and one listener thread then looks up every id that a request
 * is waiting for in one query, so the cost per notification does not grow with the number of
 * waiting requests. It is not a cache: every answer comes from the table.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapters/pg_internal.h"
#include "ap/log.h"
#include "ap/outcomes.h"
#include "ap/pg.h"
#include "ap/worker.h"

#define RECHECK_MS 500     /* waiting requests are looked up this often without a notification */
#define PURGE_EVERY_MS 60000
#define RECONNECT_MS 1000
#define PING_EVERY_MS 1000

const char *ap_outcome_kind_name(ap_outcome_kind_t kind)
{
    static const char *const names[] = {"applied", "rejected", "dead_lettered", "failed"};
    return (unsigned)kind < sizeof names / sizeof *names ? names[kind] : "failed";
}

static bool parse_kind(const char *text, ap_outcome_kind_t *kind)
{
    for (int k = AP_OUTCOME_APPLIED; k <= AP_OUTCOME_FAILED; k++) {
        if (strcmp(text, ap_outcome_kind_name((ap_outcome_kind_t)k)) == 0) {
            *kind = (ap_outcome_kind_t)k;
            return true;
        }
    }
    return false;
}

static const char select_columns[] =
    "SELECT message_id, command_type, outcome, coalesce(reason, ''), coalesce(message, ''), "
    "       coalesce(batchref, ''), out_of_stock FROM command_outcomes ";

/* One row of select_columns into `out`; false when it makes no sense. */
static bool read_row(const PGresult *res, int row, ap_command_outcome_t *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->message_id, sizeof out->message_id, "%s", PQgetvalue(res, row, 0));
    snprintf(out->command_type, sizeof out->command_type, "%s", PQgetvalue(res, row, 1));
    snprintf(out->reason, sizeof out->reason, "%s", PQgetvalue(res, row, 3));
    snprintf(out->message, sizeof out->message, "%s", PQgetvalue(res, row, 4));
    snprintf(out->batchref, sizeof out->batchref, "%s", PQgetvalue(res, row, 5));
    out->out_of_stock = PQgetvalue(res, row, 6)[0] == 't';
    return parse_kind(PQgetvalue(res, row, 2), &out->kind);
}

/* ---------------------------------------------------------------- writing */

/* Which of the ids $1 have an outcome: one probe of the primary key per id, whatever the
 * statistics say (see ST_LOAD_ORDERS in pg_statements.c), since the table holds every id of
 * the retention period. */
static const char seen_sql[] =
    "SELECT o.message_id FROM unnest($1::text[]) AS u(id)"
    " CROSS JOIN LATERAL (SELECT message_id FROM command_outcomes"
    "                      WHERE message_id = u.id OFFSET 0) o";

/* Many outcomes, a column per array. */
static const char record_sql[] =
    "INSERT INTO command_outcomes (message_id, command_type, outcome, reason, message,"
    "                              batchref, out_of_stock)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
    "                      $6::text[], $7::boolean[])";

/* For test_plans (pg_internal.h); the unit of work prepares them under names of its own. */
const ap_pg_prepared_t ap_pg_outcome_statements[] = {
    {"ap_outcomes_seen", seen_sql},
    {"ap_outcomes_record", record_sql},
    {NULL, NULL},
};

ap_err_t ap_outcomes_seen(ap_uow_t *uow, const char *const *ids, size_t n, bool *seen)
{
    PGresult *res = NULL;
    char *array = ap_pg_text_array(ids, n);
    ap_err_t err = AP_ERR_NOMEM;

    for (size_t i = 0; i < n; i++)
        seen[i] = false;
    if (!array)
        goto out;
    const char *params[1] = {array};
    err = ap_pg_uow_query(uow, seen_sql, 1, params, &res);
    if (err)
        goto out;
    for (int row = 0; row < PQntuples(res); row++) {
        const char *id = PQgetvalue(res, row, 0);
        for (size_t i = 0; i < n; i++) {
            if (!seen[i] && strcmp(ids[i], id) == 0)
                seen[i] = true;
        }
    }
out:
    PQclear(res);
    free(array);
    return err;
}

ap_err_t ap_outcomes_record(ap_uow_t *uow, const ap_command_outcome_t *outcomes, size_t n)
{
    enum { NCOLS = 6 };
    const char **cols[NCOLS] = {0};
    char *arrays[NCOLS + 1] = {0};
    char *flags = malloc(n * 2 + 3);
    ap_err_t err = AP_ERR_NOMEM;

    if (n == 0) {
        free(flags);
        return AP_OK;
    }
    for (size_t c = 0; c < NCOLS; c++) {
        if (!(cols[c] = calloc(n, sizeof *cols[c])))
            goto out;
    }
    if (!flags)
        goto out;
    size_t len = 0;
    flags[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        const ap_command_outcome_t *o = &outcomes[i];
        cols[0][i] = o->message_id;
        cols[1][i] = o->command_type;
        cols[2][i] = ap_outcome_kind_name(o->kind);
        cols[3][i] = o->reason[0] ? o->reason : NULL;
        cols[4][i] = o->message[0] ? o->message : NULL;
        cols[5][i] = o->batchref[0] ? o->batchref : NULL;
        if (i)
            flags[len++] = ',';
        flags[len++] = o->out_of_stock ? 't' : 'f';
    }
    flags[len++] = '}';
    flags[len] = '\0';
    /* The text columns as binary text[] (no literal for the server to parse), the flags as
     * a boolean[] literal. */
    int lengths[NCOLS + 1] = {0}, formats[NCOLS + 1] = {0};
    for (size_t c = 0; c < NCOLS; c++) {
        if (!(arrays[c] = ap_pg_binary_array(AP_PG_TEXT_OID, cols[c], NULL, n, &lengths[c])))
            goto out;
        formats[c] = 1;
    }
    const char *params[NCOLS + 1] = {arrays[0], arrays[1], arrays[2], arrays[3],
                                     arrays[4], arrays[5], flags};
    err = ap_pg_uow_command(uow, record_sql, NCOLS + 1, params, lengths, formats, NULL);
    if (!err)
        ap_pg_uow_notify_on_commit(uow, AP_PG_CHANNEL_OUTCOMES);
out:
    for (size_t c = 0; c < NCOLS; c++) {
        free(cols[c]);
        free(arrays[c]);
    }
    free(flags);
    return err;
}

/* ---------------------------------------------------------------- reading */

typedef struct waiter {
    const char *id;
    bool done;
    ap_command_outcome_t outcome;
    struct waiter *next;
} waiter_t;

struct ap_outcome_store {
    ap_pg_conn_t listener; /* the worker's: LISTEN, answering waiters, purging */
    int retention_hours;
    ap_worker_t worker; /* the listener; its mutex guards the waiters, `wake` says answered */
    waiter_t *waiters;
    /* The request threads' connection, one at a time; a lock of its own so a slow lookup
     * never holds up the listener answering waiters. */
    pthread_mutex_t lookup_mutex;
    ap_pg_conn_t lookup;
    int64_t last_ping_ms;
    ap_err_t last_ping;
    ap_fault_t last_ping_fault;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *const listen_commands[] = {"LISTEN " AP_PG_CHANNEL_OUTCOMES, NULL};
static const ap_pg_conn_setup_t listen_setup = {"outcome listener", listen_commands, NULL};
static const ap_pg_conn_setup_t lookup_setup = {"outcome lookups", NULL, NULL};

/* A usable lookup connection (lookup_mutex held), reconnecting when it broke. */
static PGconn *lookup_conn(ap_outcome_store_t *store)
{
    return ap_pg_conn_open(&store->lookup, &lookup_setup) == AP_OK ? store->lookup.conn : NULL;
}

ap_err_t ap_outcome_store_get(ap_outcome_store_t *store, const char *message_id,
                              ap_command_outcome_t *out)
{
    char sql[512];
    ap_err_t err = AP_ERR_UNAVAILABLE;

    snprintf(sql, sizeof sql, "%s WHERE message_id = $1", select_columns);
    pthread_mutex_lock(&store->lookup_mutex);
    PGconn *conn = lookup_conn(store);
    if (conn) {
        const char *params[1] = {message_id};
        PGresult *res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            err = ap_pg_fail(conn, res, "reading a command outcome");
        else if (PQntuples(res) == 0)
            err = AP_ERR_NOT_FOUND;
        else
            err = read_row(res, 0, out) ? AP_OK : AP_ERR_INTERNAL;
        PQclear(res);
    }
    pthread_mutex_unlock(&store->lookup_mutex);
    /* Whatever the statement's own error was, a dead connection means Postgres is away. */
    return err == AP_ERR_INTERNAL && conn && PQstatus(conn) != CONNECTION_OK
               ? AP_ERR_UNAVAILABLE
               : err;
}

ap_err_t ap_outcome_store_ping(ap_outcome_store_t *store, ap_fault_t *fault)
{
    pthread_mutex_lock(&store->lookup_mutex);
    int64_t now = now_ms();
    if (store->last_ping_ms == 0 || now - store->last_ping_ms >= PING_EVERY_MS) {
        PGconn *conn = lookup_conn(store);
        store->last_ping = AP_ERR_UNAVAILABLE;
        store->last_ping_fault = AP_FAULT_UNREACHABLE;
        if (conn) {
            PGresult *res = PQexec(conn, "SELECT 1");
            if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                (void)ap_pg_conn_fail(&store->lookup, res, "readiness check");
                store->last_ping_fault = ap_pg_thread_fault();
            } else if (ap_pg_read_only(conn)) {
                /* Answers, but the consumer could not commit a thing. A new session next
                 * time: a per-database setting reaches new sessions only. */
                store->last_ping_fault = AP_FAULT_READ_ONLY;
                ap_pg_conn_close(&store->lookup);
            } else {
                store->last_ping = AP_OK;
                store->last_ping_fault = AP_FAULT_NONE;
            }
            PQclear(res);
        } else {
            store->last_ping_fault = ap_pg_thread_fault();
        }
        store->last_ping_ms = now_ms();
    }
    ap_err_t err = store->last_ping;
    if (fault)
        *fault = store->last_ping_fault;
    pthread_mutex_unlock(&store->lookup_mutex);
    return err;
}

void ap_outcome_store_free(ap_outcome_store_t *store)
{
    if (store)
        ap_worker_destroy(&store->worker);
}

ap_err_t ap_outcome_store_wait(ap_outcome_store_t *store, const char *message_id,
                               int64_t timeout_ms, ap_command_outcome_t *out)
{
    waiter_t self = {.id = message_id};
    struct timespec until = ap_worker_deadline(timeout_ms);

    pthread_mutex_lock(&store->worker.mutex);
    self.next = store->waiters;
    store->waiters = &self;
    while (!self.done && !ap_worker_stopping(&store->worker) &&
           pthread_cond_timedwait(&store->worker.wake, &store->worker.mutex, &until) == 0) {
    }
    for (waiter_t **link = &store->waiters; *link; link = &(*link)->next) {
        if (*link == &self) {
            *link = self.next;
            break;
        }
    }
    pthread_mutex_unlock(&store->worker.mutex);
    if (self.done) {
        *out = self.outcome;
        return AP_OK;
    }
    /* The notification may have been missed (a reconnect): ask the table itself. */
    return ap_outcome_store_get(store, message_id, out);
}

/* Looks up every waiting id in one query and answers those found. */
static void answer_waiters(ap_outcome_store_t *store, PGconn *conn)
{
    const char **ids = NULL;
    size_t n = 0, cap = 0;

    pthread_mutex_lock(&store->worker.mutex);
    for (waiter_t *w = store->waiters; w; w = w->next) {
        if (w->done)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            const char **grown = realloc(ids, ncap * sizeof *grown);
            if (!grown)
                break;
            ids = grown;
            cap = ncap;
        }
        /* Copied: a waiter that times out meanwhile takes its id with it. */
        if (!(ids[n] = strdup(w->id)))
            break;
        n++;
    }
    pthread_mutex_unlock(&store->worker.mutex);
    if (n == 0)
        goto out;

    char *array = ap_pg_text_array(ids, n);
    char sql[512];
    snprintf(sql, sizeof sql, "%s WHERE message_id = ANY($1::text[])", select_columns);
    const char *params[1] = {array};
    PGresult *res = array ? PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0) : NULL;
    free(array);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        pthread_mutex_lock(&store->worker.mutex);
        for (int row = 0; row < PQntuples(res); row++) {
            ap_command_outcome_t outcome;
            if (!read_row(res, row, &outcome))
                continue;
            for (waiter_t *w = store->waiters; w; w = w->next) {
                if (!w->done && strcmp(w->id, outcome.message_id) == 0) {
                    w->outcome = outcome;
                    w->done = true;
                }
            }
        }
        pthread_cond_broadcast(&store->worker.wake);
        pthread_mutex_unlock(&store->worker.mutex);
    } else if (res) {
        ap_pg_fail(conn, res, "looking up command outcomes");
    }
    PQclear(res);
out:
    for (size_t i = 0; i < n; i++)
        free((char *)ids[i]);
    free(ids);
}

static void purge(ap_outcome_store_t *store, PGconn *conn)
{
    char hours[AP_PG_INT_SIZE];
    snprintf(hours, sizeof hours, "%d", store->retention_hours);
    const char *params[1] = {hours};
    PGresult *res = PQexecParams(conn,
                                 "DELETE FROM command_outcomes "
                                 " WHERE recorded_at < now() - make_interval(hours => $1::int)",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        ap_pg_fail(conn, res, "deleting old command outcomes");
    else if (atol(PQcmdTuples(res)) > 0)
        AP_INFO("http", "deleted %s command outcome(s) older than %d hours", PQcmdTuples(res),
                store->retention_hours);
    PQclear(res);
}

static void *listen_main(void *arg)
{
    ap_outcome_store_t *store = arg;
    int64_t last_check = 0, last_purge = now_ms() - PURGE_EVERY_MS + 5000;

    while (!ap_worker_stopping(&store->worker)) {
        if (!ap_pg_conn_connected(&store->listener)) {
            if (ap_pg_conn_open(&store->listener, &listen_setup)) {
                ap_worker_nap(&store->worker, RECONNECT_MS);
                continue;
            }
            last_check = 0; /* anything committed while we were away */
        }
        bool notified = false;
        if (ap_pg_conn_wait(&store->listener, 100, "outcome listener", &notified))
            continue; /* lost: the check above reconnects */
        int64_t now = now_ms();
        if (notified || now - last_check >= RECHECK_MS) {
            answer_waiters(store, store->listener.conn);
            last_check = now;
        }
        if (now - last_purge >= PURGE_EVERY_MS) {
            purge(store, store->listener.conn);
            last_purge = now;
        }
    }
    ap_pg_conn_close(&store->listener);
    return NULL;
}

static void store_release(void *owner)
{
    ap_outcome_store_t *store = owner;
    ap_pg_conn_release(&store->lookup);
    ap_pg_conn_release(&store->listener);
    pthread_mutex_destroy(&store->lookup_mutex);
}

static ap_err_t store_setup(void *owner, const void *arg)
{
    ap_outcome_store_t *store = owner;
    const ap_config_t *cfg = arg;
    pthread_mutex_init(&store->lookup_mutex, NULL); /* first: store_release destroys it */
    store->retention_hours = cfg->command_outcome_retention_hours;
    store->last_ping = AP_ERR_UNAVAILABLE;
    if (ap_pg_conn_init(&store->listener, cfg->database_url) ||
        ap_pg_conn_init(&store->lookup, cfg->database_url))
        return AP_ERR_NOMEM;
    return AP_OK;
}

static const ap_worker_kind_t store_kind =
    AP_WORKER_KIND("outcomes", ap_outcome_store_t, worker, store_setup, listen_main, store_release);

ap_outcome_store_t *ap_pg_outcome_store_new(const ap_config_t *cfg, ap_err_t *err)
{
    return ap_worker_spawn(&store_kind, cfg, err);
}
