#!/usr/bin/env python3
#
# test/drivers.py - orderexp's functions called from psycopg 3
#
# psycopg 3 (Debian's python3-psycopg) sends Python ints as typed integers,
# lists as typed arrays, timedelta as interval, but str untyped: a key from a
# web form arrives as a parameter of unknown type.  This calls every public
# function of orderexp with bound parameters, against three tables whose
# keys are bigint, uuid and text (keys as int, as str and as uuid.UUID),
# then LISTENs on orderexp and claims and acknowledges the events.  Run by
# TAP test 061_drivers_python.pl with the connection in PGHOST/PGPORT/
# PGUSER/PGDATABASE; prints one line "ok DESCRIPTION" or "not ok
# DESCRIPTION: ERROR" per check and exits 1 if any failed.
#
# Copyright (c) 2026, orderexp developers

import datetime
import json
import sys
import time
import uuid

import psycopg

failed = 0


def report(ok, what, why=''):
    global failed
    if ok:
        print(f'ok {what}', flush=True)
    else:
        failed += 1
        print(f'not ok {what}: {why}', flush=True)


def check(db, what, sql, params, test):
    """run one bound statement and check its first row with test(row)"""
    try:
        with db.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
        report(test(row) is True, what, f'unexpected result {row!r}')
        return row
    except psycopg.Error as e:
        report(False, what, f'{e.sqlstate} {e}')
        return None


def fails(db, what, sql, params, code):
    """run one bound statement that must fail with SQLSTATE code"""
    try:
        with db.cursor() as cur:
            cur.execute(sql, params)
        report(False, what, f'no error, expected {code}')
    except psycopg.Error as e:
        report(e.sqlstate == code, what, f'{e.sqlstate} {e}')


def one_table(db, table, key_type, keys, bad_key):
    """the same calls against one table; keys as the application holds them"""
    t = f'{table} ({key_type}, keys as {type(keys[0]).__name__})'
    dt = datetime.datetime

    check(db, f'{t}: set_close_policy, intervals as timedelta and str',
          """SELECT orderexp.set_close_policy(%s, close_after => %s, remind_before => %s,
                                              extend_by => %s, max_extensions => %s)""",
          [table, datetime.timedelta(hours=1), '10 minutes', datetime.timedelta(minutes=30), 2],
          lambda r: r is not None)
    for k in keys:
        db.execute(f'INSERT INTO {table} (id) VALUES (%s)', [k])

    check(db, f'{t}: cancel_order', 'SELECT orderexp.cancel_order(%s, %s, %s)',
          [table, keys[0], 'customer asked'], lambda r: r[0] is True)
    check(db, f'{t}: cancel_order again, without reason', 'SELECT orderexp.cancel_order(%s, %s)',
          [table, keys[0]], lambda r: r[0] is False)
    check(db, f'{t}: cancel_orders, a Python list', 'SELECT orderexp.cancel_orders(%s, %s, %s)',
          [table, [keys[1], keys[2]], 'bulk'], lambda r: r[0] == 2)
    check(db, f'{t}: extend_order by a timedelta', 'SELECT orderexp.extend_order(%s, %s, %s)',
          [table, keys[3], datetime.timedelta(days=1)], lambda r: isinstance(r[0], dt))
    check(db, f'{t}: extend_order by an interval string', 'SELECT orderexp.extend_order(%s, %s, %s)',
          [table, keys[3], '1 hour'], lambda r: isinstance(r[0], dt))
    check(db, f'{t}: reopen_order', 'SELECT orderexp.reopen_order(%s, %s, %s, %s)',
          [table, keys[0], datetime.timedelta(hours=2), 'paid late'], lambda r: isinstance(r[0], dt))
    check(db, f'{t}: history',
          'SELECT count(*), bool_or(action = %s) FROM orderexp.history(%s, %s)',
          ['reopened', table, keys[0]], lambda r: r[0] >= 2 and r[1] is True)
    check(db, f'{t}: history_json', 'SELECT orderexp.history_json(%s, %s)', [table, keys[0]],
          lambda r: isinstance(r[0], list) and len(r[0]) >= 2)
    tok = check(db, f'{t}: extension_token', 'SELECT orderexp.extension_token(%s, %s)',
                [table, keys[4]], lambda r: isinstance(r[0], str) and len(r[0]) > 20)
    if tok:
        check(db, f'{t}: extend_order_by_token', 'SELECT orderexp.extend_order_by_token(%s)',
              [tok[0]], lambda r: isinstance(r[0], dt))
    check(db, f'{t}: explain_order', 'SELECT orderexp.explain_order(%s, %s, %s)',
          [table, keys[0], None], lambda r: 'reopened' in r[0])
    check(db, f'{t}: record_feedback', 'SELECT orderexp.record_feedback(%s, %s, %s, %s)',
          [table, keys[0], 'other', 'from python'], lambda r: r[0] > 0)
    check(db, f'{t}: the key came through as the application sent it',
          'SELECT count(*) FROM orderexp.audit WHERE order_table = %s::regclass AND order_key = %s',
          [table, str(keys[0])], lambda r: r[0] >= 2)
    if bad_key is not None:
        fails(db, f'{t}: a key that does not parse is 22P02', 'SELECT orderexp.cancel_order(%s, %s)',
              [table, bad_key], '22P02')
    check(db, f'{t}: start_experiment, a list of timedelta',
          'SELECT orderexp.start_experiment(%s, %s, %s)',
          [table, [datetime.timedelta(hours=1), datetime.timedelta(hours=2)], [1, 1]],
          lambda r: r[0] > 0)
    check(db, f'{t}: end_experiment', 'SELECT orderexp.end_experiment(%s, %s)', [table, 1],
          lambda r: r is not None)


def main():
    db = psycopg.connect(autocommit=True)
    listener = psycopg.connect(autocommit=True)
    notes = []
    listener.add_notify_handler(notes.append)
    listener.execute('LISTEN orderexp')

    one_table(db, 'drv.big', 'bigint', [101, 102, 103, 104, 105], 'forty-two')
    one_table(db, 'drv.big2', 'bigint', ['201', '202', '203', '204', '205'], '1.5')
    one_table(db, 'drv.uu', 'uuid',
              [uuid.UUID(f'7a0c5a8e-0000-4000-8000-00000000000{i}') for i in range(1, 6)],
              'not-a-uuid')
    one_table(db, 'drv.uu2', 'uuid',
              [f'7a0c5a8e-0000-4000-8000-00000000001{i}' for i in range(1, 6)], 'not-a-uuid')
    one_table(db, 'drv.txt', 'text', ['A-1', 'A-2', 'A "3"', 'A,4', 'A{5}'], None)

    # the notifications of the cancellations reached the listener
    for _ in range(50):
        listener.execute('SELECT 1')
        if sum(1 for n in notes if json.loads(n.payload)['kind'] == 'cancelled') >= 5:
            break
        time.sleep(0.1)
    cancelled = [n for n in notes if n.channel == 'orderexp' and json.loads(n.payload)['kind'] == 'cancelled']
    report(len(cancelled) >= 5, 'LISTEN orderexp: the cancellations were notified',
           f'{len(notes)} notifications')

    claimed = check(db, 'claim, lease as a timedelta, kinds as a list',
                    'SELECT array_agg(id ORDER BY id) FROM orderexp.claim(%s, %s, %s)',
                    [100, datetime.timedelta(seconds=30), ['cancelled', 'extended', 'reopened']],
                    lambda r: r[0] is not None and len(r[0]) >= 10)
    if claimed:
        ids = claimed[0]
        check(db, 'ack, ids as a list', 'SELECT orderexp.ack(%s)', [ids[1:]],
              lambda r: r[0] == len(ids) - 1)
        check(db, 'fail', 'SELECT orderexp.fail(%s, %s, %s)', [ids[0], 'refused', False],
              lambda r: r is not None)
        check(db, 'requeue', 'SELECT orderexp.requeue(%s)', [[ids[0]]], lambda r: r[0] == 1)
    check(db, 'claim, lease as a string', 'SELECT count(*) FROM orderexp.claim(%s, %s)',
          [100, '30 seconds'], lambda r: r[0] >= 1)

    check(db, 'assign_variant', 'SELECT orderexp.assign_variant(%s, %s, %s)', ['A-1', [1, 1], 7],
          lambda r: r[0] in (1, 2))
    check(db, 'set_explanation_template', 'SELECT orderexp.set_explanation_template(%s, %s, %s)',
          ['placed', 'Order {order} came in at {at}.', 'en'], lambda r: r is not None)
    check(db, 'pending_json', 'SELECT jsonb_array_length(orderexp.pending_json())', [],
          lambda r: r[0] >= 5)
    check(db, 'pending_orders', 'SELECT count(*) FROM orderexp.pending_orders()', [],
          lambda r: r[0] >= 5)
    check(db, 'run_due', 'SELECT * FROM orderexp.run_due(%s)', [10], lambda r: r is not None)
    check(db, 'forget_before, a datetime', 'SELECT * FROM orderexp.forget_before(%s)',
          [datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)], lambda r: r[0] == 0)
    check(db, 'forget_before, a string', 'SELECT * FROM orderexp.forget_before(%s)',
          ['2000-01-01 00:00+00'], lambda r: r[0] == 0)
    check(db, 'rotate_secret', 'SELECT orderexp.rotate_secret()', [], lambda r: r is not None)
    check(db, 'drop_close_policy', 'SELECT orderexp.drop_close_policy(%s)', ['drv.txt'],
          lambda r: r is not None)

    listener.close()
    db.close()
    print(f'done {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
