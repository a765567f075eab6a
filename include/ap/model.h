/*
 * model.h - the allocation domain: OrderLine, Batch and the Product aggregate.
 *
 * Pure C: no I/O, no logging, no library but libc. Every change goes through a Product
 * function, which keeps the invariants (docs/domain.md), bumps `version_number` once per
 * accepted change, records the domain events it caused (collected later by the message
 * bus) and records the writes storage must make (drained by the repository on commit).
 *
 * The structs are visible so adapters and tests can read them; write them only through
 * the functions below.
 */
#ifndef AP_MODEL_H
#define AP_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ap/error.h"
#include "ap/messages.h"

typedef struct ap_order_line {
    char orderid[AP_STR_SIZE];
    char sku[AP_STR_SIZE];
    int64_t qty;
} ap_order_line_t;

/*
 * An order line as its batch holds it: the sku is the batch's, and the orderid (NUL-terminated)
 * lives in the batch's text arena at `orderid_at`. `id` is storage's id for the line (its
 * allocation order), 0 while storage has not told us (a line allocated in memory).
 */
typedef struct ap_batch_line {
    int64_t id;
    uint32_t orderid_at;
    uint32_t orderid_len;
    int64_t qty;
} ap_batch_line_t;

typedef struct ap_batch {
    char ref[AP_STR_SIZE];
    char sku[AP_STR_SIZE];
    int64_t purchased_qty;
    bool has_eta;
    int32_t eta;             /* days since 1970-01-01, when has_eta */
    /* The batch's most recent lines, in allocation order: all of them in a complete product,
     * else only the newest ones storage was asked for (and the ones allocated since). Read
     * orderids with ap_batch_line_orderid. */
    ap_batch_line_t *lines;
    size_t nlines, lines_cap;
    /* The lines' orderids, back to back (in no particular order once older lines were put in
     * front; a line taken off the end gives its bytes back when they are at the arena's end). */
    char *text;
    size_t text_len, text_cap;
    int64_t allocated_qty;   /* the sum of the qty of all its lines, in memory or not */
    int64_t known_qty;       /* the sum of the qty of `lines` */
} ap_batch_t;

/* A line of an order looked up in storage (ap_product_restore_order_line) that is older than
 * its batch's lines in memory. */
typedef struct ap_found_line {
    size_t batch; /* index into product->batches */
    int64_t id;
    int64_t qty;
    char orderid[AP_STR_SIZE];
} ap_found_line_t;

/* A write storage must apply, in order, to persist a product's changes. */
typedef enum {
    AP_CHANGE_ADD_BATCH,    /* insert batches[batch] */
    AP_CHANGE_SET_QTY,      /* update batches[batch].purchased_qty */
    AP_CHANGE_ADD_LINE,     /* allocate `line` to batches[batch] */
    AP_CHANGE_REMOVE_LINE,  /* deallocate `line` from batches[batch] */
} ap_change_kind_t;

typedef struct ap_change {
    ap_change_kind_t kind;
    size_t batch; /* index into product->batches; batches are never removed */
    ap_order_line_t line;
} ap_change_t;

typedef struct ap_product {
    char sku[AP_STR_SIZE];
    int64_t version_number;
    int64_t stored_version; /* the version storage holds; the commit's compare-and-set token */
    bool is_new;            /* not in storage yet */
    /* Every line of every batch is in memory (a new product, or one restored whole). When
     * not, the product only knows the lines storage gave it: a command that needs more gets
     * AP_ERR_NEED_LINES and nothing changes, and the repository loads what it needs. */
    bool complete;
    /* Orders storage was asked about: all their lines in this product are in memory, in a
     * batch's lines or in `found`. */
    char (*orders)[AP_STR_SIZE];
    size_t norders, orders_cap;
    ap_found_line_t *found; /* lines of those orders older than their batch's lines */
    size_t nfound, found_cap;
    /* Lines taken back (their batch, id unused) and not allocated since: the product holds
     * no identical line (it never holds two), so allocating one again needs no lookup. */
    ap_found_line_t *gone;
    size_t ngone, gone_cap;
    ap_batch_t *batches;    /* in creation order (ties in preference go to the first) */
    size_t nbatches, batches_cap;
    ap_msg_t *events;       /* recorded, not yet collected by the bus */
    size_t nevents, events_cap;
    ap_change_t *changes;   /* not yet written to storage */
    size_t nchanges, changes_cap;
} ap_product_t;

ap_err_t ap_order_line_init(ap_order_line_t *line, const char *orderid, const char *sku,
                            int64_t qty);
bool ap_order_line_equal(const ap_order_line_t *a, const ap_order_line_t *b);

/* The orderid of line `i` (< nlines). Borrowed: valid until the batch next changes. */
const char *ap_batch_line_orderid(const ap_batch_t *batch, size_t i);

/* O(1): both read allocated_qty. */
int64_t ap_batch_allocated_qty(const ap_batch_t *batch);
int64_t ap_batch_available_qty(const ap_batch_t *batch);
bool ap_batch_can_allocate(const ap_batch_t *batch, const ap_order_line_t *line);
bool ap_batch_has_line(const ap_batch_t *batch, const ap_order_line_t *line);

/* A product that storage has never seen: version 0, is_new. Caller frees with
 * ap_product_free. NULL on out-of-memory (or a sku longer than AP_STR_MAX). */
ap_product_t *ap_product_new(const char *sku);

/*
 * Rebuilding a product from storage (repositories only). None of these records events or
 * changes; AP_ERR_INVALID_COMMAND for an orderid longer than AP_STR_MAX.
 *
 * `restore` makes an empty stored product at `version`, knowing none of its lines;
 * `restore_batch` appends a batch (call in creation order) with `allocated_qty` allocated in
 * lines not in memory. `restore_line` appends a line, as the batch's newest, counted in its
 * allocated quantity: with `mark_complete` after the last, a repository (or a test) restores
 * a product whole.
 *
 * Partial loads, after the fact: `restore_older_line` puts a line storage holds (with its
 * id) in front of the batch's lines in memory; call newest first. AP_ERR_CONFLICT when it
 * cannot be one (more than the batch's allocated quantity): storage changed meanwhile.
 * `restore_order_line` adds a line of order `orderid` found in batch `ref` (AP_ERR_CONFLICT
 * when the product has no such batch); `restore_order` then says every line of `orderid` is
 * in memory. A line already in memory (same id) is not added twice.
 */
ap_product_t *ap_product_restore(const char *sku, int64_t version);
ap_err_t ap_product_restore_batch(ap_product_t *product, const char *ref, int64_t purchased_qty,
                                  bool has_eta, int32_t eta, int64_t allocated_qty,
                                  ap_batch_t **out);
ap_err_t ap_product_restore_line(ap_batch_t *batch, const char *orderid, int64_t qty);
void ap_product_mark_complete(ap_product_t *product);
ap_err_t ap_product_restore_older_line(ap_product_t *product, ap_batch_t *batch, int64_t id,
                                       const char *orderid, int64_t qty);
ap_err_t ap_product_restore_order_line(ap_product_t *product, const char *ref, int64_t id,
                                       const char *orderid, int64_t qty);
ap_err_t ap_product_restore_order(ap_product_t *product, const char *orderid);

/* True when every line of `orderid` in this product is in memory. */
bool ap_product_knows_order(const ap_product_t *product, const char *orderid);

/* The quantity allocated in lines of `batch` that are not in memory: what storage still has
 * to give before its oldest line in memory. */
int64_t ap_batch_unknown_qty(const ap_batch_t *batch);

/*
 * How many of storage's newest lines of batch index `b` the product accounts for: its lines
 * in memory, less those allocated and not written yet, plus those taken back and not
 * written yet (changes pending). Where a load of older lines starts.
 */
size_t ap_product_stored_newest(const ap_product_t *product, size_t b);

/* True when a line of `orderid` was taken back and storage has not been told yet: storage
 * would still show it, so its order cannot be looked up until the change is written. */
bool ap_product_removal_pending(const ap_product_t *product, const char *orderid);

/* Drops every line from memory, keeping the batches and their allocated quantities: for a
 * product about to be kept between transactions, whose history storage holds. */
void ap_product_forget_lines(ap_product_t *product);

/*
 * For a repository that keeps products whole (the test fake): applies the changes `changed`
 * recorded to `whole`, a complete product of the same sku, giving each new line the id
 * ++*next_id, and takes its version. AP_ERR_CONFLICT when they do not fit (a stale version,
 * a line to take back that is not the batch's newest).
 */
ap_err_t ap_product_apply_changes(ap_product_t *whole, const ap_product_t *changed,
                                  int64_t *next_id);

/* A deep copy, events and changes included. Caller frees. NULL on out-of-memory. */
ap_product_t *ap_product_clone(const ap_product_t *product);

void ap_product_free(ap_product_t *product);

/*
 * An estimate of the heap bytes `product` holds: the struct and the capacities (not the
 * counts) of its batches, their lines and text arenas, its events and its changes. Allocator
 * overhead is not counted. For a cache that bounds its memory; O(nbatches).
 */
size_t ap_product_footprint(const ap_product_t *product);

ap_batch_t *ap_product_find_batch(const ap_product_t *product, const char *ref);

/*
 * Adds a batch. The same ref with identical fields is accepted as a no-op; the same ref
 * with different fields gives AP_ERR_BATCH_EXISTS. Records BatchCreated.
 */
ap_err_t ap_product_add_batch(ap_product_t *product, const char *ref, int64_t qty, bool has_eta,
                              int32_t eta);

/*
 * Allocates a line to the preferred batch that can take all of it (warehouse stock first,
 * then earliest eta, ties to the batch created first) and records Allocated; records
 * OutOfStock and changes nothing when none can. An identical line already allocated in
 * this product is a no-op; AP_ERR_NEED_LINES (nothing changed) when the product does not
 * know whether there is one (ap_product_knows_order). `batchref_out`, if not NULL, receives the chosen batch's ref
 * (or NULL when nothing was allocated). AP_ERR_INVALID_SKU when the line's sku is not
 * this product's.
 */
ap_err_t ap_product_allocate(ap_product_t *product, const ap_order_line_t *line,
                             const char **batchref_out);

/*
 * Sets a batch's purchased quantity and records BatchQuantityChanged; then, while the
 * batch's available quantity is negative, takes back its most recently allocated line and
 * records Deallocated for it. AP_ERR_UNKNOWN_BATCH when the product has no such batch;
 * AP_ERR_NEED_LINES (nothing changed) when lines that must leave are not in memory: the
 * repository loads older lines of the batch, and the caller tries again.
 */
ap_err_t ap_product_change_batch_quantity(ap_product_t *product, const char *ref, int64_t qty);

/* Drops the recorded events (after the bus has copied them). */
void ap_product_clear_events(ap_product_t *product);

/* Releases the room reserved for events and changes when none are pending: for a product
 * about to sit in a cache, where an event's room (about 2 KB each) would dwarf its lines. */
void ap_product_trim(ap_product_t *product);

/* Storage wrote `changes`: forget them and take version_number as the stored version. */
void ap_product_mark_stored(ap_product_t *product);

#endif
