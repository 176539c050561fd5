/*-------------------------------------------------------------------------
 *
 * orderexp.c
 *		Module entry point of orderexp: the GUCs and the registration of the
 *		background launcher.
 *
 * orderexp closes unpaid orders whose deadline has passed in tables the user
 * registers with orderexp.set_close_policy(), and writes an event for each
 * state change into orderexp.outbox in the same transaction.  The work is
 * done by one background worker per database listed in orderexp.databases
 * (src/worker.c), or by orderexp.run_due() where the library cannot be
 * preloaded (src/sweep.c); new unpaid orders get their timer from a row
 * trigger (src/timer.c).  docs/architecture.md follows one order through
 * the files.
 *
 * Besides _PG_init, this file holds the SQL getters of the GUCs that SQL
 * functions read (claim() reads orderexp.max_attempts through
 * orderexp._max_attempts(): calling a C function of the module loads the
 * library, so the GUC is defined, and its postgresql.conf or ALTER DATABASE
 * value applied, even in a backend that did not preload orderexp, such as
 * the relay's or pg_cron's).
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "orderexp.h"
#include "worker.h"

/*
 * PostgreSQL 15 is the version built and tested (README, "Supported
 * versions"); 13 and 14, out of upstream support, are no longer compiled
 * for.  The branches for 16 in src/ are guards only: no test runs them.
 */
#if PG_VERSION_NUM < 150000
#error "orderexp needs PostgreSQL 15 or later"
#endif

PG_MODULE_MAGIC;

char	   *orderexp_databases = NULL;
int			orderexp_naptime = 1000;
int			orderexp_batch_size = 1000;
bool		orderexp_enabled = true;
int			orderexp_max_attempts = 10;
bool		orderexp_batch_delivery = true;
int			orderexp_event_retention = 7 * SECS_PER_DAY;
int			orderexp_max_reason_length = 4096;
int			orderexp_max_lease = SECS_PER_HOUR;

PG_FUNCTION_INFO_V1(orderexp_get_max_attempts);
PG_FUNCTION_INFO_V1(orderexp_get_event_retention);
PG_FUNCTION_INFO_V1(orderexp_get_max_reason_length);
PG_FUNCTION_INFO_V1(orderexp_get_max_lease);

void		_PG_init(void);
static bool check_databases(char **newval, void **extra, GucSource source);

/*
 * orderexp.databases is a list of identifiers, like search_path: reject a
 * malformed list when it is set rather than when the launcher reads it.
 */
static bool
check_databases(char **newval, void **extra, GucSource source)
{
	char	   *rawstring = pstrdup(*newval);
	List	   *elemlist;
	bool		ok;

	ok = SplitIdentifierString(rawstring, ',', &elemlist);
	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	list_free(elemlist);
	pfree(rawstring);
	return ok;
}

/*
 * Module load callback: define the GUCs in every process that loads the
 * library, and register the launcher only when preloaded by the postmaster.
 */
void
_PG_init(void)
{
	DefineCustomStringVariable("orderexp.databases",
							   "Databases in which the orderexp background worker closes due orders.",
							   "A comma-separated list of database names; quote a name that has upper-case letters.",
							   &orderexp_databases,
							   "postgres",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   check_databases, NULL, NULL);

	DefineCustomIntVariable("orderexp.naptime",
							"Longest time the worker sleeps between two sweeps.",
							"The worker wakes earlier when a deadline comes sooner.",
							&orderexp_naptime,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orderexp.batch_size",
							"Most orders closed in one batch (one transaction per round of tables).",
							NULL,
							&orderexp_batch_size,
							1000, 1, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("orderexp.enabled",
							 "Lets the background worker close due orders; off pauses it.",
							 "orderexp.run_due() works whatever this says.",
							 &orderexp_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	/*
	 * Delivery policy.  Superuser-only, so that it is the database's policy
	 * and not a relay's choice: a relay could otherwise retry a row forever
	 * or kill it at once, and any role that may call run_due() could
	 * shorten the history.  Per database or per relay role with ALTER
	 * DATABASE / ALTER ROLE ... SET.
	 */
	DefineCustomIntVariable("orderexp.max_attempts",
							"Delivery attempts of an outbox row before it is dead.",
							"An attempt is counted when a relay claims the row; orderexp.requeue() gives dead rows new attempts.",
							&orderexp_max_attempts,
							10, 1, 1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	/*
	 * The longest lease claim() grants.  A relay asks for its lease; without
	 * a cap a relay could take rows for centuries, and only a superuser's
	 * UPDATE would get them back.
	 */
	DefineCustomIntVariable("orderexp.max_lease",
							"Longest lease orderexp.claim() grants.",
							"A claim asking for more is refused (22023).",
							&orderexp_max_lease,
							SECS_PER_HOUR, 1, 7 * SECS_PER_DAY,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orderexp.max_reason_length",
							"Longest reason a cancel or a reopen may record, in bytes.",
							"A longer reason is refused (22001): it would be stored in the audit trail and sent to every receiver.",
							&orderexp_max_reason_length,
							4096, 64, 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orderexp.event_retention",
							"How long delivered outbox rows are kept before the worker or run_due() deletes them.",
							"Counted from the delivery; 0 keeps them forever.  Undelivered and dead rows are never deleted.",
							&orderexp_event_retention,
							7 * SECS_PER_DAY, 0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	/*
	 * Whether new outbox events go into the event stream that relays
	 * consume a batch at a time (1.3, issue 22; on by default): read by the
	 * default of orderexp.outbox.txid, orderexp._stream_txid()
	 * (src/stream.c), so that every writer of events (the sweep, the
	 * operator functions) follows it.  That default is a function of this
	 * library, so a session that writes an event has loaded it and sees
	 * this default (or what was set before the library was loaded).  Off:
	 * every event is a row claimed one by one, as up to 1.2.  claim(),
	 * ack(), fail() and next_batch() serve both kinds of events whatever it
	 * says.
	 */
	DefineCustomBoolVariable("orderexp.batch_delivery",
							 "New outbox events are delivered in batches (a stream) rather than row by row.",
							 "Relays' claim(), ack(), fail() and next_batch() handle both kinds of events.",
							 &orderexp_batch_delivery,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("orderexp");

	if (!process_shared_preload_libraries_in_progress)
		return;

	orderexp_register_launcher();
}

/*
 * orderexp._max_attempts() returns integer
 */
Datum
orderexp_get_max_attempts(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(orderexp_max_attempts);
}

/*
 * orderexp._event_retention() returns interval: the retention as days and
 * a time of day, or NULL when delivered events are kept forever
 */
Datum
orderexp_get_event_retention(PG_FUNCTION_ARGS)
{
	Interval   *result;

	if (orderexp_event_retention <= 0)
		PG_RETURN_NULL();

	result = (Interval *) palloc0(sizeof(Interval));
	result->day = orderexp_event_retention / SECS_PER_DAY;
	result->time = (int64) (orderexp_event_retention % SECS_PER_DAY) * USECS_PER_SEC;
	PG_RETURN_INTERVAL_P(result);
}

/*
 * orderexp._max_reason_length() returns integer: the longest reason text a
 * function that changes orders records, in bytes
 */
Datum
orderexp_get_max_reason_length(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(orderexp_max_reason_length);
}

/*
 * orderexp._max_lease() returns interval: orderexp.max_lease as days and a
 * time of day
 */
Datum
orderexp_get_max_lease(PG_FUNCTION_ARGS)
{
	Interval   *result = (Interval *) palloc0(sizeof(Interval));

	result->day = orderexp_max_lease / SECS_PER_DAY;
	result->time = (int64) (orderexp_max_lease % SECS_PER_DAY) * USECS_PER_SEC;
	PG_RETURN_INTERVAL_P(result);
}
