/*-------------------------------------------------------------------------
 *
 * timer.h
 *		Starting the timer of an unpaid order, for the row triggers.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_TIMER_H
#define ORDEREXP_TIMER_H

#include "access/htup.h"
#include "commands/trigger.h"
#include "datatype/timestamp.h"
#include "executor/tuptable.h"
#include "utils/rel.h"

extern void orderexp_track_order(Relation rel, Trigger *trigger, HeapTuple tuple,
								 const char *key_column, const char *created_column,
								 const char *category_column);
extern TupleTableSlot *orderexp_timer_fetch(Oid order_table, const char *key);
extern bool orderexp_plain_deadline(Oid order_table, TimestampTz created, int32 *policy_id,
									int32 *policy_version, TimestampTz *close_at);

#endif							/* ORDEREXP_TIMER_H */
