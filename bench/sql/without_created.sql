/* bench/sql/without_created.sql - a variant for bench/drain_cpu.sh: (e) without orderexp.outbox_created (without_index.sql) */
\set index outbox_created
\ir without_index.sql
