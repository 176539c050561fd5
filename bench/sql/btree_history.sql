/*
 * bench/sql/btree_history.sql - a variant for bench/drain_cpu.sh, a design
 * study: the outbox's history index as a b-tree on the order's key, not a
 * hash index (a batch's keys mostly follow one another, so their entries
 * would go to a few leaf pages in turn instead of a random bucket page
 * each; bench/instructions.md has what it measured)
 */
DROP INDEX orderexp.outbox_history;
CREATE INDEX outbox_history ON orderexp.outbox (order_key)
	WHERE via IS NOT NULL OR kind = 'reminder';
