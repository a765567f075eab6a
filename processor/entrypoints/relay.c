/*
 * relay.c - the outbox relay loop (relay.h): one thread that, while it holds the relay lock,
 * moves committed outbox rows to Kafka and deletes the acknowledged ones.
 *
 * A batch at a time: read the oldest rows, send them all, wait for every delivery report,
 * delete the acknowledged ones. The next batch is read only after that, so a row is never
 * sent while an older row of its key may still be retried, and the producer's idempotence
 * keeps the order inside a batch. A record a topic refuses as too large (its
 * max.message.bytes) is not dropped and not parked: its row stays, and so do the later rows
 * of its key, which are not sent until it is delivered; it is tried again with backoff, said
 * once in the log, on /readyz and on /metrics, until the topic accepts it, while other keys
 * flow. Once a batch has taken every row there was, the thread sleeps on LISTEN/NOTIFY
 * (with a short timeout as a fallback). Postgres and Kafka are adapters (outbox_reader.h,
 * kafka_producer.h); this file holds only the policy: leadership, batching, backoff and
 * stopping.
 */
#include "ap/relay.h"
#include "ap/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ap/array.h"
#include "ap/backoff.h"
#include "ap/log.h"
#include "ap/log_adapters.h"
#include "ap/outbox_reader.h"
#include "ap/kafka_producer.h"

#define BATCH_MAX 1000        /* rows read, sent and deleted at a time */
#define LOCK_RETRY_MS 1500    /* how often a standby asks for the lock */
#define IDLE_WAIT_MS 500      /* the polling fallback when no notification comes */
#define STOP_FLUSH_MS 5000    /* how long a stop waits for the batch in flight */
#define RECONNECT_MIN_MS 500  /* reconnect backoff, doubling up to ... */
#define RECONNECT_MAX_MS 10000
#define FAILURE_MIN_MS 250    /* backoff after a batch with failed deliveries, doubling to ... */
#define FAILURE_MAX_MS 5000
#define VACUUM_AFTER_ROWS 2000 /* the active relay vacuums the outbox once it deleted this many */
#define VACUUM_GAP_MS 1000     /* rows since its last vacuum, and at most this often */
#define EVENT_ID_HEADER "event-id"

/* SLOT_REFUSED: Kafka will never take the record; its row is parked (outbox_parked).
 * SLOT_TOO_LARGE: the topic refused it as too large; it stays and holds its key.
 * SLOT_HELD: not sent, because an older row of its key is held up (too large). */
enum slot_state { SLOT_PENDING, SLOT_DELIVERED, SLOT_FAILED, SLOT_REFUSED, SLOT_TOO_LARGE,
                  SLOT_HELD };

/* A key whose oldest row a topic refused as too large: the rest of the key waits. */
typedef struct held_key {
    char *topic;
    void *key; /* NULL for a null key */
    size_t key_len;
    bool sent; /* its oldest row went out in the batch being sent */
} held_key_t;

/* One record of the batch in flight; its address is the record's delivery opaque. */
typedef struct slot {
    int64_t id;
    enum slot_state state;
    const char *topic; /* borrowed from the fetched row, for the log */
    size_t size;        /* key and value bytes, for the log */
    int64_t created_ms; /* the row's insert time, wall clock */
    char reason[160];  /* SLOT_REFUSED: Kafka's reason */
} slot_t;

struct ap_relay {
    const ap_config_t *cfg; /* borrowed until ap_relay_stop returns */
    ap_worker_t worker; /* its mutex also guards stats */
    ap_relay_stats_t stats;
    _Atomic(ap_metric_t *) latency; /* may be NULL */

    /* Owned by the thread once it runs. */
    ap_clock_t *clock; /* the system clock (ap/log_adapters.h) */
    ap_outbox_reader_t *pg;
    ap_producer_t *producer;
    slot_t slots[BATCH_MAX];
    int64_t acked[BATCH_MAX];
    ap_header_t *headers; /* one row's headers plus event-id, reused */
    size_t headers_cap;
    size_t batch_failed;     /* failed reports in the batch in flight */
    char batch_error[256];   /* the first one's text */
    char logged_error[256];  /* the last failure text logged at warn level */
    char logged_too_large[256]; /* "topic: reason" of the refusal logged last ("" none) */
    held_key_t *held;        /* keys held up by a too-large row, from the last batch */
    size_t nheld, held_cap;
    size_t deleted_unvacuumed; /* rows deleted since the outbox was last vacuumed */
    int64_t vacuumed_ms;       /* when (the clock's time) */
};

/* ---------------------------------------------------------------- time and stopping */

static bool stopping(ap_relay_t *relay)
{
    return ap_worker_stopping(&relay->worker);
}

static void nap(ap_relay_t *relay, int64_t ms)
{
    ap_worker_nap(&relay->worker, ms);
}

/* ---------------------------------------------------------------- stats */

static void forget_held(ap_relay_t *relay);

static void set_state(ap_relay_t *relay, bool leader, bool connected)
{
    if (!leader)
        forget_held(relay); /* whoever holds the lock next finds them again */
    pthread_mutex_lock(&relay->worker.mutex);
    relay->stats.leader = leader;
    relay->stats.connected = connected;
    if (!leader) {
        relay->stats.refused_rows = 0;
        relay->stats.refused_reason[0] = '\0';
    }
    pthread_mutex_unlock(&relay->worker.mutex);
}

static void set_connected(ap_relay_t *relay, bool connected)
{
    pthread_mutex_lock(&relay->worker.mutex);
    relay->stats.connected = connected;
    pthread_mutex_unlock(&relay->worker.mutex);
}

static void count(ap_relay_t *relay, size_t delivered, size_t failed, size_t parked)
{
    pthread_mutex_lock(&relay->worker.mutex);
    relay->stats.delivered += delivered;
    relay->stats.failed += failed;
    relay->stats.parked += parked;
    pthread_mutex_unlock(&relay->worker.mutex);
}

/* The rows held up by too-large records after a batch: `refused` refused in it, `rows` held
 * in all, and why (empty when none). */
static void set_refused(ap_relay_t *relay, size_t refused, size_t rows, const char *why)
{
    pthread_mutex_lock(&relay->worker.mutex);
    relay->stats.refused += refused;
    relay->stats.refused_rows = rows;
    snprintf(relay->stats.refused_reason, sizeof relay->stats.refused_reason, "%s", why);
    pthread_mutex_unlock(&relay->worker.mutex);
}

void ap_relay_observe_latency(ap_relay_t *relay, ap_metric_t *latency)
{
    atomic_store(&relay->latency, latency);
}

void ap_relay_stop(ap_relay_t *relay)
{
    if (relay)
        ap_worker_destroy(&relay->worker);
}

void ap_relay_stats(ap_relay_t *relay, ap_relay_stats_t *stats)
{
    pthread_mutex_lock(&relay->worker.mutex);
    *stats = relay->stats;
    pthread_mutex_unlock(&relay->worker.mutex);
    stats->silent_ms = ap_worker_silent_ms(&relay->worker);
}

/* ---------------------------------------------------------------- one batch */

static void on_delivery(void *ctx, void *opaque, ap_err_t err, const char *reason)
{
    ap_relay_t *relay = ctx;
    slot_t *slot = opaque;
    if (err == AP_OK) {
        slot->state = SLOT_DELIVERED;
        ap_metric_t *latency = atomic_load(&relay->latency);
        if (latency && slot->created_ms > 0)
            ap_metric_observe_since(latency, slot->created_ms);
        return;
    }
    if (err == AP_ERR_REFUSED || err == AP_ERR_TOO_LARGE) {
        slot->state = err == AP_ERR_REFUSED ? SLOT_REFUSED : SLOT_TOO_LARGE;
        snprintf(slot->reason, sizeof slot->reason, "%s", reason ? reason : ap_strerror(err));
        return;
    }
    slot->state = SLOT_FAILED;
    if (relay->batch_failed++ == 0)
        snprintf(relay->batch_error, sizeof relay->batch_error, "%s", reason ? reason : "?");
}

static void note_failure(ap_relay_t *relay, const char *reason)
{
    if (relay->batch_failed++ == 0)
        snprintf(relay->batch_error, sizeof relay->batch_error, "%s", reason);
}

/* A row's headers, then event-id, in relay->headers. */
static bool gather_headers(ap_relay_t *relay, const ap_outbox_row_t *row)
{
    size_t want = row->nheaders + 1;
    if (!AP_ARRAY_RESERVE(relay->headers, relay->headers_cap, want))
        return false;
    if (row->nheaders)
        memcpy(relay->headers, row->headers, row->nheaders * sizeof *row->headers);
    /* Last, so readers taking a header's last value see the relay's id. */
    relay->headers[row->nheaders] = (ap_header_t){
        .name = EVENT_ID_HEADER,
        .name_len = strlen(EVENT_ID_HEADER),
        .value = row->event_id,
        .value_len = strlen(row->event_id),
    };
    return true;
}

/* Queues one row; false when no more rows should be sent now (a fatal producer error, or a
 * stop while the producer's queue is full). */
static bool send_row(ap_relay_t *relay, const ap_outbox_row_t *row, slot_t *slot)
{
    if (!gather_headers(relay, row)) {
        slot->state = SLOT_FAILED;
        note_failure(relay, "out of memory");
        return true;
    }
    for (;;) {
        ap_err_t err = ap_producer_send(relay->producer, row->topic, row->key, row->key_len,
                                        row->value, row->value_len, relay->headers,
                                        row->nheaders + 1, slot);
        if (err == AP_OK)
            return true;
        if (ap_producer_fatal(relay->producer)) {
            slot->state = SLOT_FAILED;
            note_failure(relay, "fatal producer error");
            return false;
        }
        if (err == AP_ERR_REFUSED) {
            slot->state = SLOT_REFUSED;
            snprintf(slot->reason, sizeof slot->reason, "%s", ap_strerror(err));
            return true;
        }
        if (err != AP_ERR_UNAVAILABLE) {
            /* Logged by the producer; the row stays and is tried again next batch. */
            slot->state = SLOT_FAILED;
            note_failure(relay, ap_strerror(err));
            return true;
        }
        /* The local queue is full: let reports drain it, unless Kafka is away and we are
         * asked to stop. */
        if (stopping(relay)) {
            slot->state = SLOT_FAILED;
            note_failure(relay, "stopped with the producer's queue full");
            return false;
        }
        ap_producer_poll(relay->producer, 100);
    }
}

/* Waits for every report of the batch; bounded once a stop is asked for. */
static void await_reports(ap_relay_t *relay)
{
    int64_t stop_deadline = -1;
    while (ap_producer_pending(relay->producer) > 0) {
        /* The whole batch is queued: waiting out linger.ms would only add latency. */
        ap_producer_flush(relay->producer, 100);
        set_connected(relay, ap_outbox_reader_connected(relay->pg) &&
                                 ap_producer_reachable(relay->producer));
        if (ap_producer_fatal(relay->producer)) {
            ap_producer_purge(relay->producer, 2000);
            return;
        }
        if (stopping(relay)) {
            if (stop_deadline < 0)
                stop_deadline = ap_clock_now_ms(relay->clock) + STOP_FLUSH_MS;
            if (ap_clock_now_ms(relay->clock) >= stop_deadline) {
                AP_WARN("relay", "stopping: %d record(s) not acknowledged after %d ms; their "
                                 "rows stay in the outbox",
                        ap_producer_pending(relay->producer), STOP_FLUSH_MS);
                ap_producer_purge(relay->producer, 2000);
                return;
            }
        }
    }
}

/* ---------------------------------------------------------------- keys held up */

static void forget_held(ap_relay_t *relay)
{
    for (size_t i = 0; i < relay->nheld; i++) {
        free(relay->held[i].topic);
        free(relay->held[i].key);
    }
    relay->nheld = 0;
}

static held_key_t *find_held(ap_relay_t *relay, const ap_outbox_row_t *row)
{
    for (size_t i = 0; i < relay->nheld; i++) {
        held_key_t *h = &relay->held[i];
        if (strcmp(h->topic, row->topic) == 0 && (h->key == NULL) == (row->key == NULL) &&
            h->key_len == row->key_len && (!row->key || memcmp(h->key, row->key, row->key_len) == 0))
            return h;
    }
    return NULL;
}

/* Holds `row`'s key in the next batches; false when out of memory (then it is not held, and
 * the order of that key's later rows rests on them failing in the same request). */
static bool hold(ap_relay_t *relay, const ap_outbox_row_t *row)
{
    if (find_held(relay, row))
        return true;
    if (!AP_ARRAY_RESERVE(relay->held, relay->held_cap, relay->nheld + 1))
        return false;
    held_key_t h = {.topic = strdup(row->topic), .key_len = row->key_len};
    if (row->key && (h.key = malloc(row->key_len ? row->key_len : 1)))
        memcpy(h.key, row->key, row->key_len);
    if (!h.topic || (row->key && !h.key)) {
        free(h.topic);
        free(h.key);
        return false;
    }
    relay->held[relay->nheld++] = h;
    return true;
}

/*
 * After a batch: the keys whose rows a topic refused as too large are held (their later
 * rows wait), the count and the reason are published, and the log says so once when it
 * begins or its cause changes, and once when it is over. `refused_out` receives the rows
 * sent and refused.
 */
static void settle_too_large(ap_relay_t *relay, const ap_outbox_row_t *rows, size_t n,
                             size_t *refused_out)
{
    size_t refused = 0, held = 0, largest = 0;
    const slot_t *first = NULL;
    char why[256] = "", cause[256];

    forget_held(relay);
    for (size_t j = 0; j < n; j++) {
        const slot_t *slot = &relay->slots[j];
        if (slot->state == SLOT_TOO_LARGE) {
            refused++;
            first = first ? first : slot;
            largest = slot->size > largest ? slot->size : largest;
            (void)hold(relay, &rows[j]);
        }
    }
    /* Held rows whose oldest row went through this time go in the next batch, at once. */
    for (size_t j = 0; j < n; j++)
        held += relay->slots[j].state == SLOT_HELD && find_held(relay, &rows[j]);
    if (first) {
        snprintf(why, sizeof why, "%s refused %zu record(s), the largest %zu bytes (%s)",
                 first->topic, refused, largest, first->reason);
        snprintf(cause, sizeof cause, "%s: %s", first->topic, first->reason);
        if (strcmp(cause, relay->logged_too_large) != 0)
            AP_ERROR("relay", "%s; they and the later events of their keys stay in the outbox "
                              "and are sent again until the topic accepts them: raise the "
                              "topic's max.message.bytes",
                     why);
        snprintf(relay->logged_too_large, sizeof relay->logged_too_large, "%s", cause);
    } else if (relay->logged_too_large[0] && n > 0) {
        AP_INFO("relay", "the topics take the records they refused as too large again: "
                         "delivering");
        relay->logged_too_large[0] = '\0';
    }
    set_refused(relay, refused, refused + held, why);
    *refused_out = refused;
}

/*
 * Relays one batch: AP_OK with `failed` set when some rows were not delivered, and `more`
 * when rows are known to be waiting (the batch was full, or some were held back); an error
 * when Postgres failed (logged).
 */
static ap_err_t relay_batch(ap_relay_t *relay, bool *failed, bool *more)
{
    const ap_outbox_row_t *rows = NULL;
    size_t n = 0, nacked = 0, deleted = 0;
    ap_err_t err;
    int64_t started = ap_clock_now_ms(relay->clock);

    *failed = *more = false;
    if ((err = ap_outbox_reader_fetch(relay->pg, BATCH_MAX, &rows, &n)))
        return err;
    *more = n == BATCH_MAX;
    if (n == 0)
        return AP_OK;

    relay->batch_failed = 0;
    relay->batch_error[0] = '\0';
    for (size_t j = 0; j < relay->nheld; j++)
        relay->held[j].sent = false;
    size_t i = 0;
    for (; i < n; i++) {
        relay->slots[i] = (slot_t){.id = rows[i].id, .state = SLOT_PENDING,
                                   .topic = rows[i].topic, .created_ms = rows[i].created_ms,
                                   .size = rows[i].key_len + rows[i].value_len};
        /* Of a held key, only the oldest row goes: the others must not overtake it. */
        held_key_t *held = find_held(relay, &rows[i]);
        if (held && held->sent) {
            relay->slots[i].state = SLOT_HELD;
            continue;
        }
        if (held)
            held->sent = true;
        if (!send_row(relay, &rows[i], &relay->slots[i])) {
            i++;
            break;
        }
    }
    for (size_t j = i; j < n; j++)
        relay->slots[j] =
            (slot_t){.id = rows[j].id, .state = SLOT_FAILED, .topic = rows[j].topic};
    await_reports(relay);

    for (size_t j = 0; j < n; j++) {
        if (relay->slots[j].state == SLOT_DELIVERED)
            relay->acked[nacked++] = relay->slots[j].id;
    }
    size_t nparked = 0;
    ap_err_t park_err = AP_OK;
    err = ap_outbox_reader_delete(relay->pg, relay->acked, nacked, &deleted);
    for (size_t j = 0; j < n && !err && !park_err; j++) {
        const slot_t *slot = &relay->slots[j];
        if (slot->state != SLOT_REFUSED)
            continue;
        /* Out of the way of the rows behind it, where an operator can look at it. */
        if ((park_err = ap_outbox_reader_park(relay->pg, slot->id, slot->reason)) == AP_OK) {
            nparked++;
            AP_ERROR("relay", "outbox row %lld for %s refused by Kafka for good (%s): moved "
                              "to outbox_parked",
                     (long long)slot->id, slot->topic, slot->reason);
        }
    }
    size_t ntoo_large = 0, nwaiting = 0;
    settle_too_large(relay, rows, n, &ntoo_large);
    for (size_t j = 0; j < n; j++)
        nwaiting += relay->slots[j].state == SLOT_HELD;
    /* A refused row that could not be parked stays, like any failed one; rows held behind a
     * too-large one were not sent at all (nor do they call for a pause: once their oldest
     * row is through, they go in the next batch). */
    size_t nfailed = n - nacked - nparked - nwaiting;
    count(relay, err ? 0 : deleted, nfailed, nparked);
    relay->deleted_unvacuumed += (err ? 0 : deleted) + nparked;
    AP_DEBUG("relay", "batch of %zu row(s), ids %lld..%lld: %zu delivered, %zu failed, %zu held, "
                      "%lld ms", n, (long long)rows[0].id, (long long)rows[n - 1].id, nacked,
             nfailed, nwaiting, (long long)(ap_clock_now_ms(relay->clock) - started));
    *failed = nfailed > 0;
    *more = *more || nwaiting > 0;
    if (nfailed > ntoo_large) { /* too-large ones have said their own */
        const char *why = relay->batch_error[0] ? relay->batch_error : "not acknowledged";
        /* One warning per distinct cause, not one per retry; a stop has said its own. */
        bool quiet = stopping(relay) || strcmp(why, relay->logged_error) == 0;
        ap_log(quiet ? AP_LOG_DEBUG : AP_LOG_WARN, "relay",
               "%zu of %zu record(s) not delivered (first: %s); their rows stay in the outbox",
               nfailed - ntoo_large, n, why);
        snprintf(relay->logged_error, sizeof relay->logged_error, "%s", why);
    } else {
        relay->logged_error[0] = '\0';
    }
    if (err)
        AP_WARN("relay", "%zu delivered row(s) not deleted; they will be sent again", nacked);
    return err ? err : park_err;
}

/* ---------------------------------------------------------------- the thread */

/*
 * Each fetch reads the outbox oldest first, and steps over the index entry of every row
 * deleted since the table's last vacuum: after a burst of a million commands, before
 * autovacuum came by, a fetch cost 10 ms (see ap_outbox_reader_vacuum). So the relay vacuums
 * the table itself once it has deleted VACUUM_AFTER_ROWS rows, at most every VACUUM_GAP_MS.
 * A failure is only logged: the next fetch says whether the session is lost.
 */
static void vacuum_when_due(ap_relay_t *relay)
{
    int64_t now = ap_clock_now_ms(relay->clock);
    if (relay->deleted_unvacuumed < VACUUM_AFTER_ROWS || now - relay->vacuumed_ms < VACUUM_GAP_MS)
        return;
    bool done = false;
    ap_err_t err = ap_outbox_reader_vacuum(relay->pg, &done);
    AP_DEBUG("relay", "vacuuming the outbox after %zu deleted rows: %s, %lld ms",
             relay->deleted_unvacuumed,
             done ? "done" : err ? ap_strerror(err) : "not allowed for this role",
             (long long)(ap_clock_now_ms(relay->clock) - now));
    relay->deleted_unvacuumed = 0;
    relay->vacuumed_ms = now;
}

static void renew_producer(ap_relay_t *relay)
{
    ap_producer_t *fresh = NULL;
    ap_producer_purge(relay->producer, 2000);
    if (ap_producer_new(relay->cfg, "allocation-processor-relay", on_delivery, relay, &fresh)) {
        AP_ERROR("relay", "cannot replace the failed producer; retrying");
        return;
    }
    ap_producer_free(relay->producer);
    relay->producer = fresh;
    AP_INFO("relay", "replaced the producer after a fatal error");
}

static void *relay_main(void *arg)
{
    ap_relay_t *relay = arg;
    bool leader = false, standby_logged = false;
    unsigned reconnects = 0, failures = 0; /* in a row: how long the next pause is */

    while (!stopping(relay)) {
        ap_producer_poll(relay->producer, 0);
        if (ap_producer_fatal(relay->producer)) {
            renew_producer(relay);
            nap(relay, ap_backoff_ms(RECONNECT_MIN_MS, RECONNECT_MAX_MS, reconnects++));
            continue;
        }
        if (!ap_outbox_reader_connected(relay->pg)) {
            if (leader)
                AP_WARN("relay", "no longer active: the database session holding the relay "
                                 "lock ended");
            leader = false;
            set_state(relay, false, false);
            if (ap_outbox_reader_connect(relay->pg)) {
                nap(relay, ap_backoff_ms(RECONNECT_MIN_MS, RECONNECT_MAX_MS, reconnects++));
                continue;
            }
        }
        if (!leader) {
            bool got = false;
            if (ap_outbox_reader_try_lock(relay->pg, &got)) {
                nap(relay, ap_backoff_ms(RECONNECT_MIN_MS, RECONNECT_MAX_MS, reconnects++));
                continue;
            }
            reconnects = 0;
            set_state(relay, got, ap_producer_reachable(relay->producer));
            if (!got) {
                if (!standby_logged)
                    AP_INFO("relay", "standing by: another relay holds the relay lock");
                standby_logged = true;
                nap(relay, LOCK_RETRY_MS);
                continue;
            }
            AP_INFO("relay", "active: took the relay lock");
            leader = true;
            standby_logged = false;
        }

        bool failed = false, more = false;
        ap_err_t err = relay_batch(relay, &failed, &more);
        if (err) {
            /* Lost sessions are handled at the top of the loop; anything else (a missing
             * table, bad rows) is retried after a growing pause. */
            if (ap_outbox_reader_connected(relay->pg)) {
                nap(relay, ap_backoff_ms(RECONNECT_MIN_MS, RECONNECT_MAX_MS, reconnects++));
            }
            continue;
        }
        reconnects = 0;
        set_connected(relay, ap_producer_reachable(relay->producer));
        if (failed) {
            nap(relay, ap_backoff_ms(FAILURE_MIN_MS, FAILURE_MAX_MS, failures++));
            continue;
        }
        failures = 0;
        vacuum_when_due(relay);
        /* A batch that settled every row it read, short of BATCH_MAX, took every row
         * committed when it was read, and each commit that adds rows notifies after it:
         * rather than read an empty table again, wait, and a notification that came
         * meanwhile (queued on the session) ends the wait at once. */
        if (!more) {
            bool notified = false;
            (void)ap_outbox_reader_wait(relay->pg, IDLE_WAIT_MS, &notified);
        }
    }

    if (leader)
        AP_INFO("relay", "stopped: released the relay lock");
    ap_outbox_reader_disconnect(relay->pg);
    set_state(relay, false, false);
    return NULL;
}

/* ---------------------------------------------------------------- start and stop */

static void relay_release(void *owner)
{
    ap_relay_t *relay = owner;
    ap_producer_free(relay->producer);
    ap_outbox_reader_free(relay->pg);
    ap_clock_free(relay->clock);
    free(relay->headers);
    forget_held(relay);
    free(relay->held);
}

static ap_err_t relay_setup(void *owner, const void *arg)
{
    ap_relay_t *relay = owner;
    relay->cfg = arg;
    relay->pg = ap_pg_outbox_reader_new(relay->cfg->database_url);
    relay->clock = ap_system_clock_new();
    if (!relay->pg || !relay->clock)
        return AP_ERR_NOMEM;
    /* Created here so a bad KAFKA_* setting stops the program at start-up. */
    return ap_producer_new(relay->cfg, "allocation-processor-relay", on_delivery, relay,
                           &relay->producer);
}

static const ap_worker_kind_t relay_kind =
    AP_WORKER_KIND("relay", ap_relay_t, worker, relay_setup, relay_main, relay_release);

ap_relay_t *ap_relay_start(const ap_config_t *cfg, ap_err_t *err)
{
    return ap_worker_spawn(&relay_kind, cfg, err);
}
