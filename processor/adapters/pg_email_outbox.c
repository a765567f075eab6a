/*
 * pg_email_outbox.c - the email outbox on PostgreSQL (email.h): the notifier adapter that
 * inserts a row of `email_outbox` inside the unit of work's current scope, and the email
 * sender's session that takes due rows one at a time and deletes or reschedules them.
 *
 * One row, one short transaction on the sender's side: the row is locked (FOR UPDATE SKIP
 * LOCKED, so replicas never send the same row at once) while one SMTP exchange runs, then
 * deleted or pushed back. This file does not decide when to send or how long to back off:
 * the sender loop does (entrypoints/email_sender.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/pg_internal.h"
#include "ap/email.h"
#include "ap/log.h"

/* ---------------------------------------------------------------- writing side */

typedef struct pg_email_outbox {
    ap_notifier_t notifier; /* first: the notifier port */
    ap_uow_t *uow;
    char *origin;
} pg_email_outbox_t;

/* event_id is the event's (its Message-ID derives from it); a notifier given none lets
 * Postgres make one. */
static const char insert_sql[] =
    "INSERT INTO email_outbox (origin, recipient, subject, body, event_id) "
    "VALUES ($1, $2, $3, $4, COALESCE(NULLIF($5, '')::uuid, gen_random_uuid()))";
static const char insert_many_sql[] =
    "INSERT INTO email_outbox (origin, recipient, subject, body, event_id) "
    "SELECT u.origin, u.recipient, u.subject, u.body, "
    "       COALESCE(NULLIF(u.event_id, '')::uuid, gen_random_uuid()) "
    "  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) "
    "       WITH ORDINALITY AS u(origin, recipient, subject, body, event_id, ord) "
    " ORDER BY u.ord";

/* For test_plans (pg_internal.h); the unit of work prepares them under names of its own. */
const ap_pg_prepared_t ap_pg_email_outbox_statements[] = {
    {"ap_email_insert", insert_sql},
    {"ap_email_insert_many", insert_many_sql},
    {NULL, NULL},
};

static ap_err_t email_outbox_send(ap_notifier_t *notifier, const char *to, const char *subject,
                                  const char *body, const char *event_id)
{
    pg_email_outbox_t *self = container_of(notifier, pg_email_outbox_t, notifier);
    const char *params[5] = {self->origin, to, subject, body, event_id ? event_id : ""};
    /* Like the outbox's rows: with deferred writes it goes with the next round trip. */
    ap_err_t err = ap_pg_uow_insert(self->uow, insert_sql, insert_many_sql, 5, params, NULL, NULL);
    if (!err)
        ap_pg_uow_notify_on_commit(self->uow, AP_PG_CHANNEL_EMAIL);
    return err;
}

static void email_outbox_free(ap_notifier_t *notifier)
{
    pg_email_outbox_t *self = container_of(notifier, pg_email_outbox_t, notifier);
    free(self->origin);
    free(self);
}

static const struct ap_notifier_ops email_outbox_ops = {email_outbox_send, email_outbox_free};

ap_err_t ap_pg_email_outbox_new(ap_uow_t *uow, const char *origin, ap_notifier_t **out)
{
    pg_email_outbox_t *self = calloc(1, sizeof *self);
    if (!self || !(self->origin = strdup(origin))) {
        free(self);
        return AP_ERR_NOMEM;
    }
    self->notifier.ops = &email_outbox_ops;
    self->uow = uow;
    *out = &self->notifier;
    return AP_OK;
}

/* ---------------------------------------------------------------- reading side */

/* The session's prepared statements, by what they do. */
enum { TAKE, SENT, RETRY };
const ap_pg_prepared_t ap_pg_email_queue_statements[] = {
    [TAKE] = {"ap_email_take",
              "SELECT id, event_id::text, recipient, subject, body, attempts FROM email_outbox "
              " WHERE origin = $1 AND next_attempt_at <= clock_timestamp() "
              " ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"},
    [SENT] = {"ap_email_sent", "DELETE FROM email_outbox WHERE id = $1::bigint"},
    [RETRY] = {"ap_email_retry",
               "UPDATE email_outbox SET attempts = attempts + 1, last_error = $3, "
               "       next_attempt_at = clock_timestamp() + $2::bigint * interval '1 millisecond' "
               " WHERE id = $1::bigint"},
    {NULL, NULL},
};

enum { COL_ID, COL_EVENT_ID, COL_TO, COL_SUBJECT, COL_BODY, COL_ATTEMPTS, NCOLS };

struct ap_email_queue {
    ap_pg_conn_t session;
    char *origin;
    PGresult *res; /* the taken row points into it */
    bool in_tx;
};

ap_email_queue_t *ap_pg_email_queue_new(const char *conninfo, const char *origin)
{
    ap_email_queue_t *queue = calloc(1, sizeof *queue);
    if (!queue)
        return NULL;
    queue->origin = strdup(origin);
    if (ap_pg_conn_init(&queue->session, conninfo) || !queue->origin) {
        ap_email_queue_free(queue);
        return NULL;
    }
    return queue;
}

void ap_email_queue_free(ap_email_queue_t *queue)
{
    if (!queue)
        return;
    PQclear(queue->res);
    ap_pg_conn_release(&queue->session);
    free(queue->origin);
    free(queue);
}

bool ap_email_queue_connected(ap_email_queue_t *queue)
{
    return ap_pg_conn_connected(&queue->session);
}

/* As the relay's: a delete lost in a server crash only sends a row again, with the same
 * Message-ID, which a receiver can drop. */
static const char *const queue_commands[] = {"SET synchronous_commit TO off",
                                             "LISTEN " AP_PG_CHANNEL_EMAIL, NULL};
static const ap_pg_conn_setup_t queue_setup = {"email session", queue_commands,
                                               ap_pg_email_queue_statements};

ap_err_t ap_email_queue_connect(ap_email_queue_t *queue)
{
    if (!ap_email_queue_connected(queue))
        queue->in_tx = false; /* a lost session took its transaction with it */
    return ap_pg_conn_open(&queue->session, &queue_setup);
}

void ap_email_queue_release(ap_email_queue_t *queue)
{
    if (queue->session.conn && queue->in_tx)
        (void)ap_pg_conn_exec(&queue->session, "ROLLBACK", "email rollback");
    queue->in_tx = false;
}

ap_err_t ap_email_queue_take(ap_email_queue_t *queue, ap_email_row_t *row, bool *found)
{
    ap_err_t err;

    if (!queue->session.conn)
        return AP_ERR_UNAVAILABLE;
    ap_email_queue_release(queue);
    if ((err = ap_pg_conn_exec(&queue->session, "BEGIN", "email begin")))
        return err;
    queue->in_tx = true;
    PQclear(queue->res);
    const char *params[1] = {queue->origin};
    queue->res = PQexecPrepared(queue->session.conn, ap_pg_email_queue_statements[TAKE].name,
                                1, params, NULL, NULL, 0);
    if (PQresultStatus(queue->res) != PGRES_TUPLES_OK || PQnfields(queue->res) != NCOLS) {
        err = ap_pg_conn_fail(&queue->session, queue->res, "email take");
        ap_email_queue_release(queue);
        return err;
    }
    if (PQntuples(queue->res) == 0) {
        ap_email_queue_release(queue);
        *found = false;
        return AP_OK;
    }
    const PGresult *res = queue->res;
    if (!ap_pg_get_int64(res, 0, COL_ID, &row->id)) {
        ap_email_queue_release(queue);
        return AP_ERR_INTERNAL;
    }
    row->event_id = PQgetvalue(res, 0, COL_EVENT_ID);
    row->to = PQgetvalue(res, 0, COL_TO);
    row->subject = PQgetvalue(res, 0, COL_SUBJECT);
    row->body = PQgetvalue(res, 0, COL_BODY);
    row->attempts = atoi(PQgetvalue(res, 0, COL_ATTEMPTS));
    *found = true;
    return AP_OK;
}

/* Runs one prepared statement on the taken row, then commits. */
static ap_err_t finish(ap_email_queue_t *queue, const char *stmt, int nparams,
                       const char *const *params, const char *what)
{
    if (!queue->session.conn || !queue->in_tx)
        return AP_ERR_UNAVAILABLE;
    PGresult *res = PQexecPrepared(queue->session.conn, stmt, nparams, params, NULL, NULL, 0);
    ap_err_t err = AP_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        err = ap_pg_conn_fail(&queue->session, res, what);
    PQclear(res);
    if (err) {
        ap_email_queue_release(queue);
        return err;
    }
    queue->in_tx = false;
    return ap_pg_conn_exec(&queue->session, "COMMIT", "email commit");
}

ap_err_t ap_email_queue_sent(ap_email_queue_t *queue, int64_t id)
{
    char id_text[AP_PG_INT_SIZE];
    snprintf(id_text, sizeof id_text, "%lld", (long long)id);
    const char *params[1] = {id_text};
    return finish(queue, ap_pg_email_queue_statements[SENT].name, 1, params, "email delete");
}

ap_err_t ap_email_queue_retry(ap_email_queue_t *queue, int64_t id, int64_t delay_ms,
                              const char *error)
{
    char id_text[AP_PG_INT_SIZE], delay_text[AP_PG_INT_SIZE];
    snprintf(id_text, sizeof id_text, "%lld", (long long)id);
    snprintf(delay_text, sizeof delay_text, "%lld", (long long)delay_ms);
    const char *params[3] = {id_text, delay_text, error};
    return finish(queue, ap_pg_email_queue_statements[RETRY].name, 3, params, "email retry");
}

ap_err_t ap_email_queue_wait(ap_email_queue_t *queue, int timeout_ms)
{
    return ap_pg_conn_wait(&queue->session, timeout_ms, "email listen", NULL);
}
