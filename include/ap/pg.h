/*
 * pg.h - the PostgreSQL adapters: unit of work + repository, read-model queries, migrations.
 *
 * `conninfo` is a libpq URI or keyword string; it may hold a password, so it is never
 * logged. Each object owns one connection and belongs to one thread.
 */
#ifndef AP_PG_H
#define AP_PG_H

#include "ap/error.h"
#include "ap/fault.h"
#include "ap/ports.h"

/*
 * A unit of work on its own connection. Connection failures give AP_ERR_UNAVAILABLE; the
 * next outermost begin reconnects. Stale versions, serialization failures, deadlocks and
 * unique violations on commit give AP_ERR_CONFLICT. Caller frees with ap_uow_free.
 */
ap_err_t ap_pg_uow_new(const char *conninfo, ap_uow_t **out);

/* Read-model queries on their own connection. Caller frees with ap_views_free. */
ap_err_t ap_pg_views_new(const char *conninfo, ap_views_t **out);

/*
 * Applies the migrations compiled into the program (schemas/sql/NNN_*.sql) that are not
 * applied yet, each in its own transaction, under an advisory lock so two processes can
 * run it at once. Logs each one applied. `applied`, if not NULL, receives how many ran.
 */
ap_err_t ap_pg_migrate(const char *conninfo, int *applied);

/*
 * What the calling thread's last Postgres failure that gave AP_ERR_UNAVAILABLE was: the
 * server unreachable, read-only, refusing sessions over a connection limit, or out of
 * resources. Per thread, like errno: a loop asks right after its own call failed.
 */
ap_fault_t ap_pg_thread_fault(void);

#endif
