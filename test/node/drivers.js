/*
 * test/node/drivers.js - orderexp's functions called from node-postgres
 *
 * node-postgres (npm pg 8) sends every bound parameter untyped, as text:
 * keys, arrays of keys and intervals all arrive as parameters of unknown
 * type, and the server has to pick each function from those alone.  This
 * calls every public function of orderexp that way, against three tables
 * whose keys are bigint, uuid and text, then LISTENs on orderexp and
 * claims and acknowledges the events.  Run by TAP test 060_drivers_node.pl
 * with the connection in PGHOST/PGPORT/PGUSER/PGDATABASE; prints one line
 * "ok DESCRIPTION" or "not ok DESCRIPTION: ERROR" per check and exits 1 if
 * any failed.
 *
 * Copyright (c) 2026, orderexp developers
 */
'use strict';

const { Client } = require('pg');

let failed = 0;

function report(ok, what, why) {
	if (ok)
		console.log(`ok ${what}`);
	else {
		failed++;
		console.log(`not ok ${what}: ${why}`);
	}
}

/* run one bound statement and check its first row with test(row) */
async function check(db, what, sql, params, test) {
	try {
		const res = await db.query(sql, params);
		const row = res.rows[0];
		const verdict = test(row, res);
		report(verdict === true, what, `unexpected result ${JSON.stringify(res.rows)}`);
		return row;
	} catch (e) {
		report(false, what, `${e.code} ${e.message}`);
		return undefined;
	}
}

/* run one bound statement that must fail with SQLSTATE code */
async function fails(db, what, sql, params, code) {
	try {
		await db.query(sql, params);
		report(false, what, `no error, expected ${code}`);
	} catch (e) {
		report(e.code === code, what, `${e.code} ${e.message}`);
	}
}

/* the same calls against one table; keys[i] as the application holds them */
async function oneTable(db, table, keyType, keys, badKey) {
	const t = `${table} (${keyType})`;

	await check(db, `${t}: set_close_policy, intervals as strings`,
		`SELECT orderexp.set_close_policy($1, close_after => $2, remind_before => $3,
										  extend_by => $4, max_extensions => $5)`,
		[table, '1 hour', '10 minutes', '30 minutes', 2], (r) => r !== undefined);
	for (const k of keys)
		await db.query(`INSERT INTO ${table} (id) VALUES ($1)`, [k]);

	await check(db, `${t}: cancel_order`,
		'SELECT orderexp.cancel_order($1, $2, $3) AS r', [table, keys[0], 'customer asked'],
		(r) => r.r === true);
	await check(db, `${t}: cancel_order again, without reason`,
		'SELECT orderexp.cancel_order($1, $2) AS r', [table, keys[0]], (r) => r.r === false);
	await check(db, `${t}: cancel_orders, a JavaScript array`,
		'SELECT orderexp.cancel_orders($1, $2, $3) AS r', [table, [keys[1], keys[2]], 'bulk'],
		(r) => r.r === 2);
	await check(db, `${t}: extend_order by an interval string`,
		'SELECT orderexp.extend_order($1, $2, $3) AS r', [table, keys[3], '1 day'],
		(r) => r.r instanceof Date);
	await check(db, `${t}: extend_order by the policy`,
		'SELECT orderexp.extend_order($1, $2) AS r', [table, keys[3]], (r) => r.r instanceof Date);
	await check(db, `${t}: reopen_order`,
		'SELECT orderexp.reopen_order($1, $2, $3, $4) AS r', [table, keys[0], '2 hours', 'paid late'],
		(r) => r.r instanceof Date);
	await check(db, `${t}: history`,
		'SELECT count(*)::int AS n, bool_or(action = $3) AS reopened FROM orderexp.history($1, $2)',
		[table, keys[0], 'reopened'], (r) => r.n >= 2 && r.reopened === true);
	await check(db, `${t}: history_json`,
		'SELECT orderexp.history_json($1, $2) AS r', [table, keys[0]],
		(r) => Array.isArray(r.r) && r.r.length >= 2);
	const tok = await check(db, `${t}: extension_token`,
		'SELECT orderexp.extension_token($1, $2) AS r', [table, keys[4]],
		(r) => typeof r.r === 'string' && r.r.length > 20);
	if (tok)
		await check(db, `${t}: extend_order_by_token`,
			'SELECT orderexp.extend_order_by_token($1) AS r', [tok.r], (r) => r.r instanceof Date);
	await check(db, `${t}: explain_order`,
		'SELECT orderexp.explain_order($1, $2, $3) AS r', [table, keys[0], null],
		(r) => typeof r.r === 'string' && r.r.includes('reopened'));
	await check(db, `${t}: record_feedback`,
		'SELECT orderexp.record_feedback($1, $2, $3, $4) AS r', [table, keys[0], 'other', 'from node'],
		(r) => Number(r.r) > 0);
	await check(db, `${t}: the key came through as the application sent it`,
		'SELECT count(*)::int AS n FROM orderexp.audit WHERE order_table = $1::regclass AND order_key = $2',
		[table, String(keys[0])], (r) => r.n >= 2);
	if (badKey !== null)
		await fails(db, `${t}: a key that does not parse is 22P02`,
			'SELECT orderexp.cancel_order($1, $2)', [table, badKey], '22P02');
	await check(db, `${t}: start_experiment, an array of interval strings`,
		'SELECT orderexp.start_experiment($1, $2, $3) AS r', [table, ['1 hour', '2 hours'], [1, 1]],
		(r) => r.r > 0);
	await check(db, `${t}: end_experiment`,
		'SELECT orderexp.end_experiment($1, $2) AS r', [table, 1], (r) => r !== undefined);
}

async function main() {
	const db = new Client();
	const listener = new Client();
	await db.connect();
	await listener.connect();

	/* LISTEN orderexp before anything happens */
	const notes = [];
	listener.on('notification', (m) => notes.push(m));
	await listener.query('LISTEN orderexp');

	await oneTable(db, 'drv.big', 'bigint', [101, 102, 103, 104, 105], 'forty-two');
	await oneTable(db, 'drv.uu', 'uuid',
		['7a0c5a8e-0000-4000-8000-000000000001', '7a0c5a8e-0000-4000-8000-000000000002',
		 '7a0c5a8e-0000-4000-8000-000000000003', '7a0c5a8e-0000-4000-8000-000000000004',
		 '7a0c5a8e-0000-4000-8000-000000000005'], 'not-a-uuid');
	await oneTable(db, 'drv.txt', 'text', ['A-1', 'A-2', 'A "3"', 'A,4', 'A{5}'], null);

	/* the notifications of the cancellations reached the listener */
	for (let i = 0; i < 50 && !notes.some((m) => m.channel === 'orderexp'); i++)
		await new Promise((res) => setTimeout(res, 100));
	const cancelled = notes.filter((m) => JSON.parse(m.payload).kind === 'cancelled');
	report(cancelled.length >= 3, 'LISTEN orderexp: the cancellations were notified',
		`${notes.length} notifications`);

	/* claim with bound arguments, ack, fail, requeue */
	const claimed = await check(db, 'claim, lease as an interval string, kinds as an array',
		'SELECT array_agg(id ORDER BY id) AS ids FROM orderexp.claim($1, $2, $3)',
		[100, '30 seconds', ['cancelled', 'extended', 'reopened']],
		(r) => Array.isArray(r.ids) && r.ids.length >= 6);
	if (claimed) {
		const ids = claimed.ids.map(Number);
		await check(db, 'ack, ids as an array', 'SELECT orderexp.ack($1) AS r', [ids.slice(1)],
			(r) => r.r === ids.length - 1);
		await check(db, 'fail', 'SELECT orderexp.fail($1, $2, $3) AS r', [ids[0], 'refused', false],
			(r) => r !== undefined);
		await check(db, 'requeue', 'SELECT orderexp.requeue($1) AS r', [[ids[0]]], (r) => r.r === 1);
	}

	await check(db, 'assign_variant', 'SELECT orderexp.assign_variant($1, $2, $3) AS r',
		['A-1', [1, 1], 7], (r) => r.r === 1 || r.r === 2);
	await check(db, 'set_explanation_template', 'SELECT orderexp.set_explanation_template($1, $2, $3) AS r',
		['placed', 'Order {order} came in at {at}.', 'en'], (r) => r !== undefined);
	await check(db, 'pending_json', 'SELECT jsonb_array_length(orderexp.pending_json()) AS r', [],
		(r) => r.r >= 3);
	await check(db, 'pending_orders', 'SELECT count(*)::int AS r FROM orderexp.pending_orders()', [],
		(r) => r.r >= 3);
	await check(db, 'run_due', 'SELECT * FROM orderexp.run_due($1)', [10], (r) => r !== undefined);
	await check(db, 'forget_before, a timestamp string', 'SELECT * FROM orderexp.forget_before($1)',
		['2000-01-01 00:00+00'], (r) => Number(r.audit_rows) === 0);
	await check(db, 'rotate_secret', 'SELECT orderexp.rotate_secret() AS r', [], (r) => r !== undefined);
	await check(db, 'drop_close_policy', 'SELECT orderexp.drop_close_policy($1) AS r', ['drv.txt'],
		(r) => r !== undefined);

	await listener.end();
	await db.end();
	console.log(`done ${failed} failed`);
	process.exit(failed ? 1 : 0);
}

main().catch((e) => {
	console.log(`not ok the script ran to its end: ${e.stack}`);
	process.exit(1);
});
