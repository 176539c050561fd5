/* bench/sql/without_stream.sql - a variant for bench/drain_cpu.sh: (e) without orderexp.outbox_stream (without_index.sql) */
\set index outbox_stream
\ir without_index.sql
