/* bench/sql/without_history.sql - a variant for bench/drain_cpu.sh: (e) without orderexp.outbox_history (without_index.sql) */
\set index outbox_history
\ir without_index.sql
