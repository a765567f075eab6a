/*
 * ports.h - what the service layer needs from the world, as function tables.
 *
 * A port is a struct whose first member points to a `static const` table of functions. An
 * adapter (or a test fake) embeds the port first and gets itself back with container_of.
 * Callers use the ap_<port>_<verb> dispatchers, never the table by hand. No library type
 * crosses a port: adapters translate libpq/librdkafka errors into ap_err_t.
 *
 * Threads: every port instance belongs to the one thread that uses it.
 */
#ifndef AP_PORTS_H
#define AP_PORTS_H

#include <stddef.h>
#include <stdint.h>

#include "ap/error.h"
#include "ap/messages.h"
#include "ap/model.h"
#include "ap/product_cache.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#endif

/* ---------------------------------------------------------------- unit of work */

typedef struct ap_uow ap_uow_t;

/*
 * The unit of work: a transaction, the repository of Products and the read-model writes.
 *
 * Scopes nest: the outermost begin opens a transaction, each inner begin a savepoint, so a
 * batch of commands can share one transaction while each command (and each event handler)
 * still succeeds or fails alone. Every scope ends with exactly one commit or rollback.
 */
struct ap_uow_ops {
    /* The transaction. */
    ap_err_t (*begin)(ap_uow_t *uow);
    /* Writes every product in uow->seen that has changes, each guarded by a compare-and-set
     * of its stored version (AP_ERR_CONFLICT when stale), then ends the scope. On error the
     * dispatcher rolls the scope back. */
    ap_err_t (*commit)(ap_uow_t *uow);
    void (*rollback)(ap_uow_t *uow);

    /* The repository of Products, read inside the current scope. */
    struct {
        /* A freshly loaded product (caller owns it) or AP_ERR_NOT_FOUND. */
        ap_err_t (*load)(ap_uow_t *uow, const char *sku, ap_product_t **out);
        ap_err_t (*load_by_batchref)(ap_uow_t *uow, const char *ref, ap_product_t **out);
        /* Optional (NULL: not supported): loads many products in one round trip, skipping
         * the ones the caller already holds. known[i] is the version of skus[i] the caller
         * holds, or -1. Sets stored[i] to the version storage holds (-1: no such product)
         * and out[i] to a fresh product (caller owns it) when that differs from known[i],
         * else to NULL. */
        ap_err_t (*load_many)(ap_uow_t *uow, const char *const *skus, const int64_t *known,
                              size_t n, int64_t *stored, ap_product_t **out);
        /*
         * Loads hand out products that know their batches (and allocated quantities) but
         * not their lines; a command that needs lines gets them with one of these, one
         * round trip each, from storage as the open transaction sees it (so with every
         * earlier scope's writes). `load_orders`: for each i, every stored line of order
         * orderids[i] in products[i] (ap_product_restore_order_line, then
         * ap_product_restore_order). `load_older_lines`: up to `max` lines of the product's
         * batch `batch`, newest first, after the ap_product_stored_newest ones it accounts
         * for (ap_product_restore_older_line).
         */
        ap_err_t (*load_orders)(ap_uow_t *uow, ap_product_t *const *products,
                                const char *const *orderids, size_t n);
        ap_err_t (*load_older_lines)(ap_uow_t *uow, ap_product_t *product, size_t batch,
                                     size_t max);
    } repo;

    /* Read model writes (allocations_view), inside the current scope. Removing a row that
     * is not there is not an error. */
    struct {
        ap_err_t (*add)(ap_uow_t *uow, const char *orderid, const char *sku,
                        const char *batchref);
        ap_err_t (*remove)(ap_uow_t *uow, const char *orderid, const char *sku,
                           const char *batchref);
    } view;

    /*
     * Consumer offsets, stored with the effects they cover. `claim` takes ownership of a
     * partition for this consumer: it bumps and returns the partition's owner epoch and
     * returns the next offset to read (-1 when none is stored). `advance` moves the offset
     * from `expected` to `next` only if the epoch is still ours and the offset is still
     * `expected`; otherwise AP_ERR_FENCED. Both run inside the current scope.
     */
    struct {
        ap_err_t (*claim)(ap_uow_t *uow, const char *group, const char *topic,
                          int32_t partition, int64_t *epoch, int64_t *next_offset);
        ap_err_t (*advance)(ap_uow_t *uow, const char *group, const char *topic,
                            int32_t partition, int64_t epoch, int64_t expected, int64_t next);
    } offsets;

    void (*free)(ap_uow_t *uow);
};

struct ap_uow {
    const struct ap_uow_ops *ops;
    /* Maintained by the dispatchers (service/uow.c); adapters read `seen` in commit. */
    unsigned depth;       /* open scopes */
    ap_product_t **seen;  /* every product handed out since the last collect; owned */
    size_t nseen, seen_cap;
    /* Products as committed by earlier scopes of the open transaction, so later commands
     * need not load them again. Each is tagged with the scope that put it there (scopes are
     * numbered as they begin): a rollback drops what its scope and the ones in it put. */
    ap_product_cache_t *cache;
    uint64_t scopes_begun;
    uint64_t scope_ids[8]; /* scope_ids[d]: the number of the open scope at depth d (1..7) */
    /* Products as the last transaction that used them committed them, kept between
     * transactions (ap_uow_keep_committed) so a product is not loaded whole for every batch;
     * storage confirms the version before one is used again. NULL: not kept. */
    ap_product_cache_t *committed;
    /* Set by the transaction's owner: inside it, writes nobody waits for may be sent with
     * the next round trip instead of at once. A write that then fails cannot be pinned on
     * its scope any more, so it dooms the whole transaction (below). */
    bool defer_writes;
    /* Set by a backend: the transaction can only be rolled back (every call until the
     * outermost rollback fails with AP_ERR_CONFLICT, so its owner retries it whole). */
    bool doomed;
};

/* Initialises the shared part of an adapter's uow. */
void ap_uow_init(ap_uow_t *uow, const struct ap_uow_ops *ops);

/*
 * Keeps committed products between transactions, up to about max_bytes of them (0: keep
 * none). Only with a backend that has repo.load_many, which confirms versions. AP_ERR_NOMEM.
 */
ap_err_t ap_uow_keep_committed(ap_uow_t *uow, size_t max_bytes);

/*
 * The dispatchers (service/uow.c). Every scope a begin opens ends with exactly one commit or
 * rollback; a handler's work looks like this (the bus's ap_bus_execute does it for each
 * command, and retries AP_ERR_CONFLICT from scratch):
 *
 *     ap_product_t *product;
 *     ap_err_t err = ap_uow_begin(uow);
 *     if (err)
 *         return err;                          (AP_ERR_UNAVAILABLE: no database)
 *     if ((err = ap_uow_get(uow, sku, &product)) ||
 *         (err = ap_product_allocate(product, &line, NULL))) {
 *         ap_uow_rollback(uow);                (undoes the scope; the product is forgotten)
 *         return err;
 *     }
 *     return ap_uow_commit(uow);               (rolled back already when it fails)
 *
 * ap_uow_begin: opens a transaction (depth 0) or a savepoint inside it. AP_ERR_UNAVAILABLE
 * when the backend cannot reach storage; AP_ERR_CONFLICT in a doomed transaction.
 *
 * ap_uow_commit: writes every changed product (a compare-and-set on its version) and ends
 * the scope. On any error the scope has been rolled back: AP_ERR_CONFLICT for a stale
 * version or a doomed transaction (retry the whole transaction), AP_ERR_UNAVAILABLE for a
 * lost connection. Asserts that a scope is open.
 *
 * ap_uow_rollback: ends the scope, undoing its writes and forgetting the products it handed
 * out and their events. A no-op when no scope is open (so after a failed commit too).
 */
ap_err_t ap_uow_begin(ap_uow_t *uow);
ap_err_t ap_uow_commit(ap_uow_t *uow);
void ap_uow_rollback(ap_uow_t *uow);

/*
 * The repository. Products handed out are borrowed: the uow owns them and remembers them so
 * the bus can collect their events; the same sku asked for twice gives the same object.
 * ap_uow_get: AP_ERR_NOT_FOUND when storage has no such product; AP_ERR_UNAVAILABLE,
 * AP_ERR_NOMEM. ap_uow_get_by_batchref: the product owning batch `ref`, same errors.
 */
ap_err_t ap_uow_get(ap_uow_t *uow, const char *sku, ap_product_t **out);
ap_err_t ap_uow_get_by_batchref(ap_uow_t *uow, const char *ref, ap_product_t **out);
/* Takes ownership of a new product (from ap_product_new), written on commit; freed here on
 * failure (AP_ERR_NOMEM). Adding a sku already handed out is a bug (asserts). */
ap_err_t ap_uow_add(ap_uow_t *uow, ap_product_t *product);

/*
 * Lines a handed-out product needs before a command (ap_product_allocate and
 * ap_product_change_batch_quantity say so with AP_ERR_NEED_LINES). ap_uow_load_order: every
 * line of `orderid` (a no-op when the product knows them). ap_uow_load_older_lines: more of
 * batch `ref`'s older lines (AP_ERR_INTERNAL when there are none to load, or the backend
 * cannot; or, for an order, when a line of it was taken back in this scope: storage still
 * shows it until the commit). AP_ERR_UNAVAILABLE, AP_ERR_CONFLICT (storage changed under
 * the product), AP_ERR_NOMEM.
 */
ap_err_t ap_uow_load_order(ap_uow_t *uow, ap_product_t *product, const char *orderid);
ap_err_t ap_uow_load_older_lines(ap_uow_t *uow, ap_product_t *product, const char *ref);

/* Loads the products of these skus, and of these batch refs where a kept product names the
 * sku, into the transaction's cache in one round trip where the backend can, then, in one
 * more, the lines of orders orderids[i] (NULL, or an entry NULL or "": none) of skus[i] (a
 * hint: failures are ignored; later gets load what is missing). */
void ap_uow_prefetch(ap_uow_t *uow, const char *const *skus, const char *const *orderids,
                     size_t nskus, const char *const *refs, size_t nrefs);

/* The read-model and offset writes: the table's functions above, inside the current scope. */
ap_err_t ap_uow_view_add(ap_uow_t *uow, const char *orderid, const char *sku,
                         const char *batchref);
ap_err_t ap_uow_view_remove(ap_uow_t *uow, const char *orderid, const char *sku,
                            const char *batchref);
ap_err_t ap_uow_claim_partition(ap_uow_t *uow, const char *group, const char *topic,
                                int32_t partition, int64_t *epoch, int64_t *next_offset);
ap_err_t ap_uow_advance_offset(ap_uow_t *uow, const char *group, const char *topic,
                               int32_t partition, int64_t epoch, int64_t expected, int64_t next);

/*
 * Hands the events recorded by every product handed out (oldest first) to `sink`, then
 * forgets those products. Called by the bus after each handler.
 */
typedef ap_err_t (*ap_event_sink_fn)(void *ctx, const ap_msg_t *event);
ap_err_t ap_uow_collect_new_events(ap_uow_t *uow, ap_event_sink_fn sink, void *ctx);

/* Forgets the products handed out, without their events. */
void ap_uow_forget(ap_uow_t *uow);

/* Rolls back any open scope and frees the backend. NULL is a no-op. */
void ap_uow_free(ap_uow_t *uow);

/* ---------------------------------------------------------------- publisher */

/* Where "publish" sends an event. Transactional adapters write inside the uow's scope. */
typedef struct ap_publisher ap_publisher_t;
struct ap_publisher_ops {
    ap_err_t (*publish)(ap_publisher_t *pub, const ap_msg_t *event);
    void (*free)(ap_publisher_t *pub);
};
struct ap_publisher {
    const struct ap_publisher_ops *ops;
};
/* Publishes one event: inside the uow's current scope for a transactional adapter (the
 * outbox), so it commits or vanishes with the change that raised it. The adapter's errors. */
ap_err_t ap_publisher_publish(ap_publisher_t *pub, const ap_msg_t *event);
/* NULL is a no-op. */
void ap_publisher_free(ap_publisher_t *pub);

/* ---------------------------------------------------------------- notifications */

/*
 * Where a notification goes. Transactional adapters (the email outbox, email.h) write it
 * inside the uow's current scope, so it is sent after commit, once, or never.
 */
typedef struct ap_notifier ap_notifier_t;
struct ap_notifier_ops {
    ap_err_t (*send)(ap_notifier_t *notifier, const char *to, const char *subject,
                     const char *body, const char *event_id);
    void (*free)(ap_notifier_t *notifier);
};
struct ap_notifier {
    const struct ap_notifier_ops *ops;
};
/* Sends (or queues, for a transactional adapter) one message about the event `event_id`
 * (its Message-ID derives from it, so a re-send is recognisable); the strings are borrowed
 * for the call only. */
ap_err_t ap_notifier_send(ap_notifier_t *notifier, const char *to, const char *subject,
                          const char *body, const char *event_id);
/* NULL is a no-op. */
void ap_notifier_free(ap_notifier_t *notifier);

/* ---------------------------------------------------------------- clock */

typedef struct ap_clock ap_clock_t;
struct ap_clock_ops {
    int64_t (*now_ms)(ap_clock_t *clock);  /* monotonic */
    void (*sleep_ms)(ap_clock_t *clock, int64_t ms);
    uint32_t (*random)(ap_clock_t *clock); /* for jitter */
    void (*free)(ap_clock_t *clock);
};
struct ap_clock {
    const struct ap_clock_ops *ops;
};
/* Monotonic milliseconds: for deadlines and durations, not for dates. */
int64_t ap_clock_now_ms(ap_clock_t *clock);
/* Sleeps `ms` (a fake clock only moves its time on). */
void ap_clock_sleep_ms(ap_clock_t *clock, int64_t ms);
/* A uniform random number, for jitter (ap/backoff.h) and event ids: the system clock draws
 * it from the kernel's generator, so ids from two processes never collide in practice. */
uint32_t ap_clock_random(ap_clock_t *clock);
/* NULL is a no-op. */
void ap_clock_free(ap_clock_t *clock);

/* ---------------------------------------------------------------- read model queries */

typedef struct ap_allocation_row {
    char sku[AP_STR_SIZE];
    char batchref[AP_STR_SIZE];
} ap_allocation_row_t;

/* The CQRS read side: plain queries of allocations_view, never through the domain model. */
typedef struct ap_views ap_views_t;
struct ap_views_ops {
    /* Rows for one order in allocation order; AP_ERR_NOT_FOUND when there are none.
     * Caller frees *rows with free(). */
    ap_err_t (*allocations)(ap_views_t *views, const char *orderid, ap_allocation_row_t **rows,
                            size_t *nrows);
    void (*free)(ap_views_t *views);
};
struct ap_views {
    const struct ap_views_ops *ops;
};
/* The table's allocations: AP_ERR_NOT_FOUND when the order has none; caller frees *rows. */
ap_err_t ap_views_allocations(ap_views_t *views, const char *orderid, ap_allocation_row_t **rows,
                              size_t *nrows);
/* NULL is a no-op. */
void ap_views_free(ap_views_t *views);

#endif
