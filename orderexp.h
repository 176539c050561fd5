/*-------------------------------------------------------------------------
 *
 * orderexp.h
 *		The names and the GUC variables of orderexp, shared by every module;
 *		each module of src/ has a header of its own.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_H
#define ORDEREXP_H

#define ORDEREXP_EXTENSION_NAME	"orderexp"
#define ORDEREXP_SCHEMA_NAME	"orderexp"
#define ORDEREXP_NOTIFY_CHANNEL	"orderexp"

/*
 * orderexp's advisory locks, on ("oexp", key2) in a database: key2 1 is the
 * database's worker (worker.c), key2 a table's OID the table's plain lock
 * (batch.c; no table has OID 1)
 */
#define ORDEREXP_LOCK_KEY1		0x6f657870

/* GUC variables (orderexp.c) */
extern char *orderexp_databases;
extern int	orderexp_naptime;
extern int	orderexp_batch_size;
extern bool orderexp_enabled;
extern int	orderexp_max_attempts;
extern int	orderexp_event_retention;
extern int	orderexp_max_reason_length;
extern int	orderexp_max_lease;
extern bool orderexp_batch_delivery;

#endif							/* ORDEREXP_H */
