/*
 * bench/sql/random_keys.sql - a variant for bench/drain_cpu.sh: the orders'
 * keys in no order, as random UUIDs would be (a sweep then closes its
 * batch's orders in key orders that jump about the whole key space).  Each
 * id i becomes 10,000,000,000 + (i * 48271 mod (2^31 - 1)): distinct (a
 * multiplication modulo a prime), and apart from every old id, so that the
 * update never meets a key it has not moved yet.  The table is rewritten so
 * that it has no dead rows.
 */
UPDATE bench.orders SET id = 10000000000 + id * 48271 % 2147483647;
VACUUM FULL bench.orders;
