/*
 * email.h - the out-of-stock email, reliably: an email outbox in PostgreSQL, the message
 * text, and the SMTP transport.
 *
 * Writing side: the notifier port (ports.h) filled by a PostgreSQL adapter that inserts a row
 * of `email_outbox` in the unit of work's current scope, so the email commits or vanishes
 * with the command that caused it. Reading side: what the email sender (entrypoints/
 * email_sender.h) needs to take one due row at a time, and to delete it once the SMTP server
 * accepted it or push it back with a backoff when it did not. Not the sending policy (the
 * sender decides when to retry) and not the handler (service/handlers.c decides what to say).
 *
 * The message functions are pure (no I/O), for tests.
 */
#ifndef AP_EMAIL_H
#define AP_EMAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ap/error.h"
#include "ap/ports.h"

/* ---------------------------------------------------------------- writing side */

/*
 * A notifier whose send inserts a row of email_outbox through `uow` (a PostgreSQL unit of
 * work, borrowed), inside its current scope. `origin` (copied) is the writer's TOPIC_PREFIX:
 * only senders configured with the same prefix send the row. Caller frees with
 * ap_notifier_free. AP_ERR_NOMEM.
 */
ap_err_t ap_pg_email_outbox_new(ap_uow_t *uow, const char *origin, ap_notifier_t **out);

/* ---------------------------------------------------------------- the message */

/* Room for "<" + a uuid + "@" + a domain + ">". */
#define AP_EMAIL_MESSAGE_ID_SIZE 336

/*
 * The Message-ID of the email with this event id (a uuid as text): "<event_id@domain>",
 * the domain being that of `from` ("allocation-processor.invalid" when `from` has none).
 * The same row always gets the same id, so a receiver can drop a copy re-sent after a crash.
 */
void ap_email_message_id(const char *event_id, const char *from,
                         char out[AP_EMAIL_MESSAGE_ID_SIZE]);

/*
 * The whole message as sent over SMTP (RFC 5322, CRLF line ends): Date (`date`, UTC),
 * From, To, Subject, Message-ID, MIME headers for UTF-8 plain text, then `body`. Control
 * characters in header fields become spaces (no header injection); a subject that is not
 * plain ASCII is an RFC 2047 encoded word; the body's line ends become CRLF. malloc'd, NULL
 * when out of memory.
 */
char *ap_email_format(const char *from, const char *to, const char *subject, const char *body,
                      const char *message_id, time_t date);

/* ---------------------------------------------------------------- reading side */

typedef struct ap_email_queue ap_email_queue_t;

/* One row, borrowed until the next call on the queue. */
typedef struct ap_email_row {
    int64_t id;
    const char *event_id; /* the uuid as text */
    const char *to;
    const char *subject;
    const char *body;
    int attempts; /* failed attempts before this one */
} ap_email_row_t;

/* Rows written with this `origin` (copied), over a session of its own; no I/O yet. NULL when
 * out of memory. conninfo is never logged. Caller frees. One thread. */
ap_email_queue_t *ap_pg_email_queue_new(const char *conninfo, const char *origin);

/* Connects when not connected and LISTENs on "email_outbox". AP_ERR_UNAVAILABLE (logged). */
ap_err_t ap_email_queue_connect(ap_email_queue_t *queue);
bool ap_email_queue_connected(ap_email_queue_t *queue);

/*
 * Opens a transaction and takes the oldest row that is due (next_attempt_at passed) and not
 * taken by another sender (FOR UPDATE SKIP LOCKED). `found` false (and the transaction
 * closed) when there is none. Otherwise the row stays locked until ap_email_queue_sent,
 * ap_email_queue_retry or ap_email_queue_release.
 */
ap_err_t ap_email_queue_take(ap_email_queue_t *queue, ap_email_row_t *row, bool *found);

/* The server accepted the taken row: deletes it and commits. */
ap_err_t ap_email_queue_sent(ap_email_queue_t *queue, int64_t id);

/* The server did not take it: counts the attempt, records `error` (no secrets), makes it due
 * again in `delay_ms`, commits. */
ap_err_t ap_email_queue_retry(ap_email_queue_t *queue, int64_t id, int64_t delay_ms,
                              const char *error);

/* Gives the taken row back untouched (rolls back). */
void ap_email_queue_release(ap_email_queue_t *queue);

/* Waits up to timeout_ms for a notification (rows committed); AP_ERR_UNAVAILABLE when the
 * session is lost. */
ap_err_t ap_email_queue_wait(ap_email_queue_t *queue, int timeout_ms);

/* Disconnects and frees. NULL is a no-op. */
void ap_email_queue_free(ap_email_queue_t *queue);

/* ---------------------------------------------------------------- SMTP */

typedef struct ap_smtp ap_smtp_t;

/*
 * An SMTP client (libcurl) for `url` (smtp:// with STARTTLS when the server offers it, or
 * smtps://; credentials in the URL or in `username`/`password`, either may be NULL).
 * Everything is copied; nothing secret is ever logged. Caller frees. AP_ERR_NOMEM.
 */
ap_err_t ap_smtp_new(const char *url, const char *username, const char *password,
                     ap_smtp_t **out);

/*
 * Sends one formatted message from `from` to `to`. AP_OK once the server accepted it
 * (250 after DATA); otherwise AP_ERR_UNAVAILABLE (the server could not be reached or did not
 * answer in time) or AP_ERR_REFUSED (it answered with an error), with libcurl's text in
 * `why` (never the URL or the credentials). The connection is kept for the next message.
 */
ap_err_t ap_smtp_send(ap_smtp_t *smtp, const char *from, const char *to, const char *message,
                      char *why, size_t whylen);

/* Asked (about once a second, and more often while data moves) during a send; true aborts
 * it with AP_ERR_UNAVAILABLE, so a stop need not wait out a silent server. */
typedef bool (*ap_smtp_cancel_fn)(void *ctx);
void ap_smtp_set_cancel(ap_smtp_t *smtp, ap_smtp_cancel_fn cancel, void *ctx);

/* "smtp://host:port" of the URL without credentials, path or query, for the log. */
void ap_smtp_describe(const ap_smtp_t *smtp, char *out, size_t len);

void ap_smtp_free(ap_smtp_t *smtp);

#endif
