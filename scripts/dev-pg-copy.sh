#!/usr/bin/env bash
#
# scripts/dev-pg-copy.sh - a private, relocated copy of Debian's PostgreSQL 15
#
# Usage:  bash scripts/dev-pg-copy.sh NAME      (as root)
#
# For developers who work on several branches at once on one machine: each
# branch builds, installs and tests against its own copy, so that one
# branch's `make install` never changes the orderexp another branch is
# testing.  PostgreSQL's binaries find their share and lib directories
# relative to their own location, so a copy of the three trees under a new
# root works as is.  Prints the copy's pg_config; use it as
#
#     OX_PG_CONFIG=$(bash scripts/dev-pg-copy.sh mybranch) bash scripts/test.sh
#
# Nothing in CI, the demo or the test command uses this.

set -euo pipefail
name=${1:?usage: dev-pg-copy.sh NAME}
[[ $name =~ ^[A-Za-z0-9_-]+$ ]] || { echo "bad name: $name" >&2; exit 2; }
root=/opt/pgiso/$name
major=15
if [[ ! -x $root/usr/lib/postgresql/$major/bin/pg_config ]]; then
	mkdir -p "$root/usr/lib/postgresql" "$root/usr/share/postgresql" "$root/usr/include"
	cp -a "/usr/lib/postgresql/$major" "$root/usr/lib/postgresql/"
	cp -a "/usr/share/postgresql/$major" "$root/usr/share/postgresql/"
	cp -a /usr/include/postgresql "$root/usr/include/"
fi
echo "$root/usr/lib/postgresql/$major/bin/pg_config"
