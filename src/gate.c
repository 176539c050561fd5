/*-------------------------------------------------------------------------
 *
 * gate.c
 *		Privilege gates: the one way orderexp's SQL functions change orders
 *		on behalf of a role that has no rights on orderexp's own tables.
 *
 * orderexp's tables (timers, outbox, secret, ...) belong to the extension
 * owner and nobody else may touch them.  A function that changes an order
 * (cancel, extend, reopen, ...) is therefore split in two:
 *
 *		orderexp.<name>(orders regclass, ...)	the public gate, a C function
 *												whose symbol is orderexp_gate
 *		orderexp._<name>(orders regclass, ...)	the body, kept from PUBLIC,
 *												same argument types
 *
 * The gate checks that the calling role may UPDATE the orders table named
 * by its first argument (the privilege a payment needs; 42501 otherwise),
 * and that no row-level security policy applies to the caller there (the
 * body could not honour it), then calls the body with the same arguments as
 * the extension owner, much as a SECURITY DEFINER function would, but
 * without losing who the caller was: orderexp._actor() returns that role
 * for as long as the body runs, for the audit trail of the events.  So a
 * role that cannot change an order directly cannot change it through
 * orderexp either, and a new gated function needs no C code of its own, only
 * its two SQL declarations.  orderexp_owner_gate is the same for functions
 * that register tables: it wants the caller to own the table.
 * orderexp_role_gate has no table argument and checks nothing itself: its
 * bodies (forget_before, requeue, pending_json) act only on the tables that
 * orderexp._actor() owns, which a SECURITY DEFINER function could not tell.
 *
 * The two functions of extension links have gates of their own, at the end
 * of this file: extension_token() converts the key to text for the body,
 * and extend_order_by_token() finds the table from the token itself, after
 * its form was checked (token.c), and then checks the caller's privilege on
 * that table.  The role switch itself is runas.c's.
 *
 * A body runs as the extension owner, but whatever it does on the orders
 * table goes through orderexp._orders_exec() (at the end of this file),
 * which runs that statement as the gate's caller, as the caller's own
 * UPDATE would run, so that the table's triggers, constraints and casts
 * never run with the extension owner's rights; or, for the scans that
 * registering a table makes, as the table's owner under
 * SECURITY_RESTRICTED_OPERATION, as the sweep does (batch.c).  Nor does
 * the body itself evaluate anything of the caller's: an order key given in
 * a type of its own is converted to text as the caller, before the body
 * runs (key_as_text), since a cast may be its type owner's code.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#include "orderexp.h"
#include "catalog.h"
#include "gate.h"
#include "runas.h"
#include "token.h"

PG_FUNCTION_INFO_V1(orderexp_gate);
PG_FUNCTION_INFO_V1(orderexp_owner_gate);
PG_FUNCTION_INFO_V1(orderexp_role_gate);
PG_FUNCTION_INFO_V1(orderexp_actor);
PG_FUNCTION_INFO_V1(orderexp_extension_token);
PG_FUNCTION_INFO_V1(orderexp_extend_order_by_token);
PG_FUNCTION_INFO_V1(orderexp_orders_exec);

/* the role on whose behalf the current gated call runs, or InvalidOid */
static Oid	gate_actor = InvalidOid;

static void check_table_owner(Oid relid);
static Datum gate_call(FunctionCallInfo fcinfo, void (*check) (Oid relid));

/*
 * Check that the calling role may update the orders table: a role that
 * cannot change an order directly cannot change it through orderexp either.
 * Row-level security on the table, where it applies to the caller, is
 * refused too: a body keeps orderexp's own records of the order (timers,
 * events, audit) as the extension owner, where the table's policies do not
 * reach.
 */
void
orderexp_check_order_privilege(Oid relid)
{
	AclResult	aclresult;

	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_UPDATE);
	if (aclresult != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(relid)),
				 errdetail("Changing orders through orderexp needs the UPDATE privilege on their table.")));
	if (check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("row-level security of table %s applies to role %s",
						get_rel_name(relid), GetUserNameFromId(GetUserId(), false)),
				 errdetail("orderexp keeps its own records of the order, which the table's policies do not cover."),
				 errhint("Use a role that bypasses row-level security on this table, or one that owns it.")));
}

/* the caller must own the orders table (and so may put triggers on it) */
static void
check_table_owner(Oid relid)
{
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
#if PG_VERSION_NUM >= 160000
	if (!object_ownercheck(RelationRelationId, relid, GetUserId()))
#else
	if (!pg_class_ownercheck(relid, GetUserId()))
#endif
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", get_rel_name(relid)),
				 errdetail("Registering a table with orderexp puts triggers on it.")));
}

/*
 * Run sql with the given parameters as the extension owner, search_path
 * pinned, and return the one datum of its one row, copied into the caller's
 * memory context.  While it runs, orderexp._actor() names the calling role
 * (or the actor of an enclosing gate).
 */
Datum
orderexp_call_as_owner(const char *sql, int nargs, Oid *argtypes, Datum *values,
					   const char *nulls, Oid restype, bool *isnull)
{
	Oid			save_actor = gate_actor;
	Datum		result = (Datum) 0;
	int16		typlen;
	bool		typbyval;

	if (!OidIsValid(gate_actor))
		gate_actor = GetUserId();

	PG_TRY();
	{
		RunAs		runas;
		int			ret;

		orderexp_run_as_begin(&runas, orderexp_owner(), SECURITY_LOCAL_USERID_CHANGE, true);

		if ((ret = SPI_connect()) != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
		ret = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, 2);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "orderexp internal call failed: %s", SPI_result_code_string(ret));
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
		get_typlenbyval(restype, &typlen, &typbyval);
		if (!*isnull)
			result = SPI_datumTransfer(result, typbyval, typlen);
		SPI_finish();
		orderexp_run_as_end(&runas);
	}
	PG_FINALLY();
	{
		/* the user id and GUCs are reset by (sub)transaction abort */
		gate_actor = save_actor;
	}
	PG_END_TRY();

	return result;
}

/*
 * key_as_text
 *		An order key given as another type than text (the anyelement of
 *		cancel_order(), history(), ...), or keys as another array type than
 *		text[] (cancel_orders()), converted to text or text[] as the caller,
 *		with the cast the body would have applied: "$1::text".  Sets
 *		*isnull if the cast gave NULL.
 *
 * A cast can be somebody's code (CREATE CAST needs only the ownership of
 * one of its types): were the body to convert the key, as the extension
 * owner, a role could make orderexp run its function with the extension
 * owner's rights by passing a key of a type of its own.  The bodies read a
 * key only as text (orderexp._key_text() converts it to the key column's
 * type as the caller), so they get it as text.
 */
static Datum
key_as_text(Datum value, Oid type, bool array, bool *isnull)
{
	Oid			argtypes[1] = {type};
	Datum		result;
	int			ret;

	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	ret = SPI_execute_with_args(array ? "SELECT $1::pg_catalog.text[]"
								: "SELECT $1::pg_catalog.text",
								1, argtypes, &value, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "converting an order key to text failed: %s", SPI_result_code_string(ret));
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
	if (!*isnull)
		result = SPI_datumTransfer(result, false, -1);
	SPI_finish();
	return result;
}

/*
 * Call orderexp._<name of this function>($1, ..., $n) as the extension
 * owner, with the arguments this call got, after the caller's privilege on
 * the table of the first argument was checked by "check".  Without a
 * check (the role gate) there is no table argument: the body itself limits
 * what it does to what orderexp._actor() may see.  A polymorphic argument
 * (an order key) goes to the body as text, converted here, as the caller
 * (key_as_text).
 */
static Datum
gate_call(FunctionCallInfo fcinfo, void (*check) (Oid relid))
{
	Oid			fnoid = fcinfo->flinfo->fn_oid;
	HeapTuple	proctup;
	Form_pg_proc procform;
	char	   *proname;
	Oid			rettype;
	Oid		   *declared;
	int			nargs = PG_NARGS();
	Oid		   *argtypes;
	Datum	   *values;
	char	   *nulls;
	StringInfoData sql;
	Datum		result;
	bool		isnull;
	int			i;

	proctup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fnoid));
	if (!HeapTupleIsValid(proctup))
		elog(ERROR, "cache lookup failed for function %u", fnoid);
	procform = (Form_pg_proc) GETSTRUCT(proctup);
	proname = pstrdup(NameStr(procform->proname));
	if (procform->pronamespace != get_namespace_oid(ORDEREXP_SCHEMA_NAME, false) ||
		(check != NULL &&
		 (procform->pronargs < 1 || procform->proargtypes.values[0] != REGCLASSOID)) ||
		procform->proretset)
		elog(ERROR, "function %s is not a valid orderexp gate", proname);
	rettype = procform->prorettype;
	/* the call has every declared argument: defaults are filled in */
	Assert(procform->pronargs == nargs);
	declared = palloc(Max(nargs, 1) * sizeof(Oid));
	memcpy(declared, procform->proargtypes.values, nargs * sizeof(Oid));
	ReleaseSysCache(proctup);

	if (check != NULL)
	{
		if (PG_ARGISNULL(0))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("orders table must not be null")));
		check(PG_GETARG_OID(0));
	}

	/* the actual argument types: the body's polymorphic ones resolve alike */
	argtypes = palloc(nargs * sizeof(Oid));
	values = palloc(nargs * sizeof(Datum));
	nulls = palloc(nargs + 1);
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s(",
					 quote_qualified_identifier(ORDEREXP_SCHEMA_NAME,
												psprintf("_%s", proname)));
	for (i = 0; i < nargs; i++)
	{
		argtypes[i] = get_fn_expr_argtype(fcinfo->flinfo, i);
		if (!OidIsValid(argtypes[i]))
			elog(ERROR, "could not determine the type of argument %d of %s", i + 1, proname);
		values[i] = PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
		if (IsPolymorphicType(declared[i]))
		{
			bool		array = (declared[i] == ANYARRAYOID ||
								 declared[i] == ANYCOMPATIBLEARRAYOID);
			Oid			target = array ? TEXTARRAYOID : TEXTOID;

			if (argtypes[i] != target && !PG_ARGISNULL(i))
			{
				bool		isnull;

				values[i] = key_as_text(values[i], argtypes[i], array, &isnull);
				if (isnull)
					nulls[i] = 'n';
			}
			argtypes[i] = target;
		}
		appendStringInfo(&sql, "%s$%d", i > 0 ? ", " : "", i + 1);
	}
	nulls[nargs] = '\0';
	appendStringInfoChar(&sql, ')');

	if (IsPolymorphicType(rettype))
		rettype = get_fn_expr_rettype(fcinfo->flinfo);
	result = orderexp_call_as_owner(sql.data, nargs, argtypes, values, nulls,
									rettype, &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * orderexp_gate: the C symbol of every orderexp function that changes
 * orders of a table the caller may UPDATE (cancel_order, extend_order, ...).
 */
Datum
orderexp_gate(PG_FUNCTION_ARGS)
{
	return gate_call(fcinfo, orderexp_check_order_privilege);
}

/*
 * orderexp_owner_gate: the same for functions that register a table or
 * change its policies; the caller must own the table.
 */
Datum
orderexp_owner_gate(PG_FUNCTION_ARGS)
{
	return gate_call(fcinfo, check_table_owner);
}

/*
 * orderexp_role_gate: the same for functions that act on every table the
 * caller owns (forget_before, requeue, pending_json): no check here, the
 * body scopes itself with orderexp._tables_visible(orderexp._actor(), ...).
 * A SECURITY DEFINER function could not do that: it no longer knows who
 * called it.
 */
Datum
orderexp_role_gate(PG_FUNCTION_ARGS)
{
	return gate_call(fcinfo, NULL);
}

/*
 * orderexp._actor() returns name
 *		The role on whose behalf the current orderexp call runs: the caller
 *		of the enclosing gate, else the current user.
 */
Datum
orderexp_actor(PG_FUNCTION_ARGS)
{
	Oid			actor = OidIsValid(gate_actor) ? gate_actor : GetUserId();

	PG_RETURN_DATUM(DirectFunctionCall1(namein,
										CStringGetDatum(GetUserNameFromId(actor, false))));
}

/*
 * orderexp.extension_token(orders regclass, order_key anyelement) returns text
 *		The token a reminder carries, for the order's current deadline.
 */
Datum
orderexp_extension_token(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Oid			keytype;
	Oid			typoutput;
	bool		typisvarlena;
	char	   *key;
	Oid			argtypes[2] = {REGCLASSOID, TEXTOID};
	Datum		values[2];
	Datum		result;
	bool		isnull;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("orders table must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("order key must not be null")));
	relid = PG_GETARG_OID(0);
	orderexp_check_order_privilege(relid);

	keytype = get_fn_expr_argtype(fcinfo->flinfo, 1);
	getTypeOutputInfo(keytype, &typoutput, &typisvarlena);
	key = OidOutputFunctionCall(typoutput, PG_GETARG_DATUM(1));

	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(key);
	result = orderexp_call_as_owner("SELECT orderexp._extension_token($1, $2)",
									2, argtypes, values, NULL, TEXTOID, &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * orderexp.extend_order_by_token(token text) returns timestamptz
 *		A customer's extension through the link of a reminder.
 */
Datum
orderexp_extend_order_by_token(PG_FUNCTION_ARGS)
{
	char	   *token;
	Oid			relid;
	Oid			argtypes[2] = {TEXTOID, NAMEOID};
	Datum		values[2];
	Datum		result;
	bool		isnull;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("extension token must not be null")));
	token = text_to_cstring(PG_GETARG_TEXT_PP(0));

	/*
	 * Check the signature first (as the owner, who can read the secret), so
	 * that a forged token learns nothing about tables and privileges; then
	 * the table the token names decides whose privilege counts.
	 */
	orderexp_token_check_form(token);
	values[0] = PointerGetDatum(cstring_to_text(token));
	relid = DatumGetObjectId(orderexp_call_as_owner("SELECT (orderexp._token_open($1)).order_table",
													1, argtypes, values, NULL,
													REGCLASSOID, &isnull));
	if (!OidIsValid(relid))
		orderexp_invalid_token("The table the token names is no longer registered with orderexp.");
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		orderexp_invalid_token("The token names a table that does not exist.");
	orderexp_check_order_privilege(relid);

	/* the caller's name goes into the event: who extended it */
	values[0] = PointerGetDatum(cstring_to_text(token));
	values[1] = DirectFunctionCall1(namein,
									CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
	result = orderexp_call_as_owner("SELECT orderexp._extend_order_by_token($1, $2)",
									2, argtypes, values, NULL, TIMESTAMPTZOID, &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * orderexp._orders_exec(orders regclass, as_owner boolean, sql text,
 *						 params text[]) returns setof jsonb
 *		Run one statement on a registered table on behalf of a gate's
 *		caller, and return its rows, each as a jsonb object.
 *
 * The bodies of the gates run as the extension owner; their statements on
 * the orders table come here, so that the table's code (triggers, CHECK
 * constraints, generated columns, index expressions, casts of its columns)
 * runs as somebody it belongs to: the role that called the gate (or the
 * current user, outside a gate), or with as_owner the table's owner under
 * SECURITY_RESTRICTED_OPERATION, as the sweep and PostgreSQL's maintenance
 * run it.  search_path is pinned while it runs, and whatever settings the
 * table's code changes go back when it returns (runas.c): the body goes on
 * as the extension owner.  The parameters are text ($1, $2, ...), cast by
 * the statement where it needs another type.  The statement may change
 * rows (UPDATE ... RETURNING) or lock them (SELECT ... FOR UPDATE); it is
 * run as "WITH q AS (sql) SELECT to_jsonb(q) FROM q".  Kept from PUBLIC:
 * it serves the bodies, which the extension owner runs.
 */
Datum
orderexp_orders_exec(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid;
	bool		as_owner;
	char	   *sql;
	int			nparams = 0;
	Datum	   *params = NULL;
	bool	   *paramnulls = NULL;
	Oid		   *paramtypes;
	char	   *nulls;
	Oid			role;
	RunAs		runas;
	uint64		i;
	int			ret;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("orders table, as_owner and sql must not be null")));
	relid = PG_GETARG_OID(0);
	as_owner = PG_GETARG_BOOL(1);
	sql = psprintf("WITH q AS (%s) SELECT pg_catalog.to_jsonb(q) FROM q",
				   text_to_cstring(PG_GETARG_TEXT_PP(2)));
	if (!PG_ARGISNULL(3))
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), TEXTOID, -1, false, TYPALIGN_INT,
						  &params, &paramnulls, &nparams);
	paramtypes = palloc(sizeof(Oid) * (nparams + 1));
	nulls = palloc(nparams + 1);
	for (int p = 0; p < nparams; p++)
	{
		paramtypes[p] = TEXTOID;
		nulls[p] = paramnulls[p] ? 'n' : ' ';
	}

	if (as_owner)
		role = orderexp_table_owner(relid);
	else
		role = OidIsValid(gate_actor) ? gate_actor : GetUserId();

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	orderexp_run_as_begin(&runas, role,
						  as_owner ? SECURITY_RESTRICTED_OPERATION : 0, true);
	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	ret = SPI_execute_with_args(sql, nparams, paramtypes, params, nulls, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "orderexp statement on table %s failed: %s",
			 get_rel_name(relid), SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		row = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1,
										&isnull);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &row, &isnull);
	}
	SPI_finish();
	orderexp_run_as_end(&runas);

	return (Datum) 0;
}
