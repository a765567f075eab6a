/*
 * email_sender.h - the email sender: delivers the rows of `email_outbox` over SMTP.
 *
 * Runs on a thread of its own inside `allocation-processor run`, with its own Postgres
 * session and SMTP connection. It takes one due row at a time (rows of its own TOPIC_PREFIX;
 * replicas share the work, never the same row), sends it, and deletes it only after the
 * server accepted it; a failure pushes the row back with a growing backoff (up to
 * EMAIL_RETRY_MAX_MS) and the sender pauses as long before the next one. It wakes on
 * LISTEN/NOTIFY (channel "email_outbox"), polling as a fallback. A row sent but not yet
 * deleted when the process dies is sent again, with the same Message-ID.
 *
 * Without SMTP_URL the sender writes each email to the log (info level) instead, and deletes
 * it: the behaviour before email existed, once per committed event.
 */
#ifndef AP_ENTRYPOINTS_EMAIL_SENDER_H
#define AP_ENTRYPOINTS_EMAIL_SENDER_H

#include <stdbool.h>
#include <stdint.h>

#include "ap/config.h"
#include "ap/error.h"

typedef struct ap_email_sender ap_email_sender_t;

typedef struct ap_email_sender_stats {
    uint64_t delivered; /* emails the SMTP server accepted (their rows deleted) */
    uint64_t failed;    /* attempts that failed (the row stays and is retried) */
    uint64_t logged;    /* emails written to the log because SMTP_URL is unset */
    bool smtp;          /* SMTP_URL is set */
    bool connected;     /* the Postgres session is up */
    int64_t silent_ms;  /* since the loop last went round (0 while it naps on purpose) */
} ap_email_sender_stats_t;

/* Starts the sender thread. `cfg` is borrowed until ap_email_sender_stop returns. Caller
 * stops it with ap_email_sender_stop. NULL on failure, with `err` set. */
ap_email_sender_t *ap_email_sender_start(const ap_config_t *cfg, ap_err_t *err);

/* Thread-safe snapshot of the sender's counters (for /metrics). */
void ap_email_sender_stats(ap_email_sender_t *sender, ap_email_sender_stats_t *stats);

/* Asks the thread to stop (an SMTP exchange in flight finishes first), joins and frees.
 * NULL is a no-op. */
void ap_email_sender_stop(ap_email_sender_t *sender);

#endif
