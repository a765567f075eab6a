/*
 * fakes.h - in-memory adapters for unit tests, wired through the same ap_bootstrap as
 * production. They keep state in memory and expose it for assertions.
 */
#ifndef AP_TEST_FAKES_H
#define AP_TEST_FAKES_H

#include <stddef.h>

#include "ap/ports.h"

/*
 * A unit of work over an in-memory store. Scopes nest like savepoints: a rollback restores
 * the store (products, view rows, offsets) as it was at the matching begin.
 */
ap_uow_t *ap_fake_uow_new(void);
/* Outermost commits so far (a "transaction" committed). */
size_t ap_fake_uow_commits(ap_uow_t *uow);
/* Commits of any scope so far. */
size_t ap_fake_uow_scope_commits(ap_uow_t *uow);
/* The stored product as committed by the scopes so far (an open outer scope's writes
 * included), or NULL. Borrowed, valid until the next uow call. */
const ap_product_t *ap_fake_uow_stored(ap_uow_t *uow, const char *sku);
/* Products loaded whole so far (a kept product whose version storage confirmed is not). */
size_t ap_fake_uow_loads(ap_uow_t *uow);
/* Calls of the load functions so far (products and lines): the round trips a backend would make. */
size_t ap_fake_uow_queries(ap_uow_t *uow);
/* Writes a product straight into the store, as another process would (takes ownership). */
ap_err_t ap_fake_uow_store(ap_uow_t *uow, ap_product_t *product);
/* The next `count` scope commits that write a product fail with `err` (e.g. AP_ERR_CONFLICT). */
void ap_fake_uow_fail_commits(ap_uow_t *uow, ap_err_t err, unsigned count);
/* View rows, for assertions; `i` < count, in insertion order. */
size_t ap_fake_uow_view_count(ap_uow_t *uow);
const ap_allocation_row_t *ap_fake_uow_view_row(ap_uow_t *uow, size_t i, const char **orderid);
/* Read-model queries over a fake uow's view rows (borrowed; must outlive the views). */
ap_views_t *ap_fake_views_new(ap_uow_t *uow);

/*
 * A publisher that fails `count` publications of events of `type` with `err`, from the
 * `from`-th of that type on (1: the next one), and hands every other event to a recording
 * fake publisher, which ap_fake_flaky_publisher_inner gives back (borrowed).
 */
ap_publisher_t *ap_fake_flaky_publisher_new(ap_msg_type_t type, unsigned from, unsigned count,
                                            ap_err_t err);
ap_publisher_t *ap_fake_flaky_publisher_inner(ap_publisher_t *pub);

/* Records every published event. */
ap_publisher_t *ap_fake_publisher_new(void);
size_t ap_fake_publisher_count(ap_publisher_t *pub);
const ap_msg_t *ap_fake_publisher_event(ap_publisher_t *pub, size_t i);

/* Records every notification sent. */
ap_notifier_t *ap_fake_notifier_new(void);
size_t ap_fake_notifier_count(ap_notifier_t *notifier);
/* The i-th notification's recipient and body (borrowed). */
const char *ap_fake_notifier_to(ap_notifier_t *notifier, size_t i);
const char *ap_fake_notifier_body(ap_notifier_t *notifier, size_t i);

/*
 * The email outbox's fake: a notifier that writes each email as a row of the fake uow's
 * store, inside its current scope, so a rolled-back scope takes its emails with it (as the
 * PostgreSQL adapter's rows go with their savepoint). `uow` is borrowed.
 */
ap_notifier_t *ap_fake_email_outbox_new(ap_uow_t *uow);
/* Emails committed by the scopes so far (an open outer scope's included), in order. */
size_t ap_fake_uow_email_count(ap_uow_t *uow);
/* The i-th email's body; its recipient and subject through `to` and `subject` (borrowed). */
const char *ap_fake_uow_email(ap_uow_t *uow, size_t i, const char **to, const char **subject);
/* The i-th email's event id: the event that caused it (borrowed). */
const char *ap_fake_uow_email_event_id(ap_uow_t *uow, size_t i);

/* Time stands still until someone sleeps; sleeping advances it at once. random() is a
 * fixed-seed generator. */
ap_clock_t *ap_fake_clock_new(void);
int64_t ap_fake_clock_slept_ms(ap_clock_t *clock);

#endif
