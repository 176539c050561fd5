-- The GUCs exist with their defaults (the library is preloaded on the test
-- cluster), and they can only be changed by a reload, not per session.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS orderexp;
SELECT plan(16);

SELECT is(current_setting('orderexp.naptime'), '1s', 'orderexp.naptime is 1s');
SELECT is(current_setting('orderexp.batch_size'), '1000', 'orderexp.batch_size is 1000');
SELECT is(current_setting('orderexp.enabled'), 'on', 'orderexp.enabled is on');
SELECT is(current_setting('orderexp.databases'), 'postgres', 'orderexp.databases is postgres');

SELECT is(boot_val, '1000', 'naptime: built-in default 1000 ms')
  FROM pg_settings WHERE name = 'orderexp.naptime';
SELECT is(unit, 'ms', 'naptime is in milliseconds')
  FROM pg_settings WHERE name = 'orderexp.naptime';
SELECT is(boot_val, '1000', 'batch_size: built-in default 1000')
  FROM pg_settings WHERE name = 'orderexp.batch_size';
SELECT is(boot_val, 'on', 'enabled: built-in default on')
  FROM pg_settings WHERE name = 'orderexp.enabled';
SELECT is(boot_val, 'postgres', 'databases: built-in default postgres')
  FROM pg_settings WHERE name = 'orderexp.databases';
SELECT set_eq($$SELECT name, context FROM pg_settings
                 WHERE name IN ('orderexp.batch_size', 'orderexp.databases', 'orderexp.enabled', 'orderexp.naptime')$$,
              $$VALUES ('orderexp.batch_size', 'sighup'), ('orderexp.databases', 'sighup'),
                       ('orderexp.enabled', 'sighup'), ('orderexp.naptime', 'sighup')$$,
              'the four GUCs, all changed by a reload');

SELECT throws_ok($$SET orderexp.batch_size = 10$$, '55P02', NULL,
                 'batch_size cannot be SET in a session');
SELECT throws_ok($$SET orderexp.naptime = '5s'$$, '55P02', NULL,
                 'naptime cannot be SET in a session');
SELECT throws_ok($$SET orderexp.enabled = off$$, '55P02', NULL,
                 'enabled cannot be SET in a session');
SELECT throws_ok($$SET orderexp.databases = 'x'$$, '55P02', NULL,
                 'databases cannot be SET in a session');
SELECT throws_ok($$SET orderexp.no_such = 1$$, '42602', NULL,
                 'the orderexp. prefix is reserved');
SELECT is(current_setting('orderexp.batch_size'), '1000', 'batch_size still 1000');

SELECT * FROM finish();
ROLLBACK;
