/*
 * bench/sql/without_index.sql - a variant for bench/drain_cpu.sh, a design
 * study: (e) without one of the outbox's indexes, to see what its entries
 * cost a drain (an upper bound of what any cheaper way to the same rows
 * could save).  The index is named by the psql variable "index" (one of
 * outbox_history, outbox_stream; outbox_created, which without_created.sql
 * dropped, is gone since the views find recent rows by outbox_marks); the
 * variant files that use this one set it:
 *
 *   \set index outbox_history
 *   \ir without_index.sql
 */
DROP INDEX orderexp.:"index";
