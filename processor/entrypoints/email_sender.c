/*
 * email_sender.c - the email sender loop (email_sender.h): one thread that takes due rows of
 * email_outbox one at a time, sends each over SMTP and deletes it once the server said yes.
 *
 * Postgres and SMTP are adapters (email.h); this file holds only the policy: the backoff of a
 * failing row and of the loop, reconnecting, what to do without SMTP_URL, and stopping.
 */
#include "entrypoints/email_sender.h"
#include "ap/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ap/backoff.h"
#include "ap/email.h"
#include "ap/log.h"

#define IDLE_WAIT_MS 500     /* the polling fallback when no notification comes */
#define RECONNECT_MIN_MS 500 /* Postgres reconnect backoff, doubling up to ... */
#define RECONNECT_MAX_MS 10000
#define RETRY_MIN_MS 250 /* a failed row's first backoff, doubling up to EMAIL_RETRY_MAX_MS */

struct ap_email_sender {
    const ap_config_t *cfg; /* borrowed until ap_email_sender_stop returns */
    ap_worker_t worker; /* its mutex also guards stats */
    ap_email_sender_stats_t stats;

    /* Owned by the thread once it runs. */
    ap_email_queue_t *queue;
    ap_smtp_t *smtp; /* NULL: SMTP_URL unset, emails go to the log */
    unsigned seed;   /* jitter */
    char logged_error[512]; /* the last failure text logged at warn level */
};

/* ---------------------------------------------------------------- time and stopping */

static bool stopping(ap_email_sender_t *sender)
{
    return ap_worker_stopping(&sender->worker);
}

/* ap_smtp_cancel_fn: a stop cuts an SMTP exchange short (the row stays, to be sent again). */
static bool smtp_cancelled(void *ctx)
{
    return stopping(ctx);
}

static void nap(ap_email_sender_t *sender, int64_t ms)
{
    ap_worker_nap(&sender->worker, ms);
}

/* ---------------------------------------------------------------- stats */

static void count(ap_email_sender_t *sender, uint64_t delivered, uint64_t failed,
                  uint64_t logged)
{
    pthread_mutex_lock(&sender->worker.mutex);
    sender->stats.delivered += delivered;
    sender->stats.failed += failed;
    sender->stats.logged += logged;
    pthread_mutex_unlock(&sender->worker.mutex);
}

static void set_connected(ap_email_sender_t *sender, bool connected)
{
    pthread_mutex_lock(&sender->worker.mutex);
    sender->stats.connected = connected;
    pthread_mutex_unlock(&sender->worker.mutex);
}

void ap_email_sender_stats(ap_email_sender_t *sender, ap_email_sender_stats_t *stats)
{
    pthread_mutex_lock(&sender->worker.mutex);
    *stats = sender->stats;
    pthread_mutex_unlock(&sender->worker.mutex);
    stats->silent_ms = ap_worker_silent_ms(&sender->worker);
}

void ap_email_sender_stop(ap_email_sender_t *sender)
{
    if (sender)
        ap_worker_destroy(&sender->worker);
}

/* ---------------------------------------------------------------- one email */

/*
 * Takes one due row and sends it (or logs it, without SMTP). `found` false when none was
 * due; `failed` when the server did not take it. An error when Postgres failed (logged).
 */
static ap_err_t send_one(ap_email_sender_t *sender, bool *found, bool *failed)
{
    const ap_config_t *cfg = sender->cfg;
    char message_id[AP_EMAIL_MESSAGE_ID_SIZE], why[512];
    ap_email_row_t row;
    ap_err_t err;

    *failed = false;
    if ((err = ap_email_queue_take(sender->queue, &row, found)) || !*found)
        return err;
    ap_email_message_id(row.event_id, cfg->notify_from, message_id);

    if (!sender->smtp) {
        AP_INFO("email", "not sent (SMTP_URL is not set): to=%s subject=\"%s\" body=\"%s\" "
                         "message-id=%s",
                row.to, row.subject, row.body, message_id);
        if ((err = ap_email_queue_sent(sender->queue, row.id)) == AP_OK)
            count(sender, 0, 0, 1);
        return err;
    }

    char *message = ap_email_format(cfg->notify_from, row.to, row.subject, row.body, message_id,
                                    time(NULL));
    if (!message) {
        ap_email_queue_release(sender->queue);
        return AP_ERR_NOMEM;
    }
    ap_err_t sent = ap_smtp_send(sender->smtp, cfg->notify_from, row.to, message, why,
                                 sizeof why);
    free(message);
    if (sent == AP_OK) {
        count(sender, 1, 0, 0);
        sender->logged_error[0] = '\0';
        AP_INFO("email", "sent %s to %s: %s", message_id, row.to, row.subject);
        if ((err = ap_email_queue_sent(sender->queue, row.id)))
            AP_WARN("email", "%s was sent but its row not deleted: it will be sent again, "
                             "with the same Message-ID",
                    message_id);
        return err;
    }

    if (stopping(sender)) {
        /* Cut short by a stop, not refused: the row stays as it was, for the next start. */
        ap_email_queue_release(sender->queue);
        return AP_OK;
    }
    *failed = true;
    count(sender, 0, 1, 0);
    /* Jittered, so that rows that failed together do not all come back at once. */
    int64_t delay = ap_backoff_jittered_ms(RETRY_MIN_MS, cfg->email_retry_max_ms,
                                           (unsigned)row.attempts, (uint32_t)rand_r(&sender->seed));
    /* One warning per distinct cause, not one per retry. */
    bool quiet = strcmp(why, sender->logged_error) == 0;
    ap_log(quiet ? AP_LOG_DEBUG : AP_LOG_WARN, "email",
           "%s to %s not sent (%s); attempt %d, next in %lld ms", message_id, row.to, why,
           row.attempts + 1, (long long)delay);
    snprintf(sender->logged_error, sizeof sender->logged_error, "%s", why);
    return ap_email_queue_retry(sender->queue, row.id, delay, why);
}

/* ---------------------------------------------------------------- the thread */

static void *sender_main(void *arg)
{
    ap_email_sender_t *sender = arg;
    unsigned reconnects = 0, failures = 0; /* in a row: how long the next pause is */
    bool was_connected = false;

    while (!stopping(sender)) {
        if (!ap_email_queue_connected(sender->queue)) {
            set_connected(sender, false);
            if (was_connected && reconnects == 0) /* a failure in a row has said its own */
                AP_WARN("email", "lost the database session; reconnecting");
            was_connected = false;
            if (ap_email_queue_connect(sender->queue)) {
                nap(sender, ap_backoff_ms(RECONNECT_MIN_MS, RECONNECT_MAX_MS, reconnects++));
                continue;
            }
            was_connected = true;
            set_connected(sender, true);
        }

        bool found = false, failed = false;
        if (send_one(sender, &found, &failed)) {
            /* Retried after a growing pause, a lost session reopened at the top of the loop:
             * a server that takes sessions but no writes (read-only) must not be asked again
             * at once, over and over. */
            nap(sender, ap_backoff_ms(RECONNECT_MIN_MS, RECONNECT_MAX_MS, reconnects++));
            continue;
        }
        reconnects = 0;
        if (failed) {
            /* The server is likely away for every row: pause before the next one. */
            nap(sender, ap_backoff_ms(RETRY_MIN_MS, sender->cfg->email_retry_max_ms, failures++));
            continue;
        }
        failures = 0;
        if (!found)
            (void)ap_email_queue_wait(sender->queue, IDLE_WAIT_MS);
    }
    ap_email_queue_release(sender->queue);
    set_connected(sender, false);
    return NULL;
}

/* ---------------------------------------------------------------- start and stop */

static void sender_release(void *owner)
{
    ap_email_sender_t *sender = owner;
    ap_email_queue_free(sender->queue);
    ap_smtp_free(sender->smtp);
}

static ap_err_t sender_setup(void *owner, const void *arg)
{
    ap_email_sender_t *sender = owner;
    const ap_config_t *cfg = sender->cfg = arg;
    ap_err_t err;

    sender->seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)sender;
    if (!(sender->queue = ap_pg_email_queue_new(cfg->database_url, cfg->topic_prefix)))
        return AP_ERR_NOMEM;
    if (cfg->smtp_url) {
        char where[256];
        if ((err = ap_smtp_new(cfg->smtp_url, cfg->smtp_username, cfg->smtp_password,
                               &sender->smtp)))
            return err;
        ap_smtp_set_cancel(sender->smtp, smtp_cancelled, sender);
        ap_smtp_describe(sender->smtp, where, sizeof where);
        AP_INFO("email", "out-of-stock emails go to %s through %s, from %s", cfg->notify_to,
                where, cfg->notify_from);
    } else {
        AP_WARN("email", "SMTP_URL is not set: out-of-stock emails are written to the log, "
                         "not sent");
    }
    sender->stats.smtp = sender->smtp != NULL;
    return AP_OK;
}

static const ap_worker_kind_t sender_kind =
    AP_WORKER_KIND("email", ap_email_sender_t, worker, sender_setup, sender_main, sender_release);

ap_email_sender_t *ap_email_sender_start(const ap_config_t *cfg, ap_err_t *err)
{
    return ap_worker_spawn(&sender_kind, cfg, err);
}
