# shellcheck shell=bash
#
# scripts/lib.sh - shared set-up for scripts/test.sh and scripts/demo.sh
#
# Usage (from another script, never run directly):
#
#     source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#     ox_setup                         # packages, build, install
#     ox_cluster_start "shared_preload_libraries = 'orderexp'" ...
#     ox_psql -d postgres -c 'SELECT 1'
#     # the EXIT/INT/TERM trap stops the cluster and removes temp dirs
#
# Assumes a Debian bookworm machine and root.  What it does:
#
#   ox_install_packages  apt-get update + install of the build and test
#                        packages, skipped when dpkg-query says they are all
#                        installed already.
#   ox_install_node_modules  npm install of test/node's packages (the
#                        standardwebhooks package, which verifies the
#                        relay's webhook signatures in TAP 034, and pg,
#                        node-postgres, of the driver test TAP 060) into
#                        test/node/node_modules, skipped when they are there;
#                        nodejs and npm from apt when there is no npm.
#   ox_build             copies the work tree (without .git and build outputs)
#                        into a fresh temp dir owned by postgres, builds it
#                        there as postgres (PostgreSQL refuses to run as root,
#                        and the tests run from that copy), then
#                        `make install` as root.  Sets OX_BUILD_DIR.
#   ox_cluster_start     initdb + pg_ctl start of a throwaway cluster, as
#                        postgres, in a temp dir: unix socket in that dir
#                        only (listen_addresses = ''), its own port, plus the
#                        configuration lines given as arguments.  Sets
#                        OX_PGHOST, OX_PGPORT, OX_PGDATA, OX_PGLOG.
#   ox_cluster_stop      pg_ctl stop -m fast, then -m immediate if need be.
#
# Debian's postgresql-15 package may create and start its own "main" cluster
# on port 5432: nothing here uses it or touches it.
#
# Variables a caller may set before calling ox_setup:
#   OX_QUIET_BUILD=1   do not echo compiler warnings of a successful build
#                      (the whole log is shown when the build fails)

set -euo pipefail

OX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OX_PG_MAJOR=15
# OX_PG_CONFIG (developers only, CI sets nothing): build, install and test
# against another installation of PostgreSQL 15, e.g. a relocated copy of
# Debian's, so that parallel work does not share one installed extension
OX_PG_CONFIG=${OX_PG_CONFIG:-/usr/lib/postgresql/$OX_PG_MAJOR/bin/pg_config}
OX_PGBIN=$(dirname "$OX_PG_CONFIG")
# arguments of every make call on the extension
OX_MAKE_ARGS=(with_llvm=no "PG_CONFIG=$OX_PG_CONFIG")

OX_PACKAGES=(
	build-essential
	"postgresql-$OX_PG_MAJOR"
	"postgresql-server-dev-$OX_PG_MAJOR"
	"postgresql-$OX_PG_MAJOR-cron"
	"postgresql-$OX_PG_MAJOR-pgtap"
	libtap-parser-sourcehandler-pgtap-perl
	libipc-run-perl
	# orderexp-relay: libcurl (webhooks, SMTP), libcrypto (HMAC) and
	# libmicrohttpd (--metrics-listen) through pkg-config; its tests run an
	# SMTP server from aiosmtpd
	libcurl4-openssl-dev
	libssl-dev
	libmicrohttpd-dev
	pkg-config
	python3-aiosmtpd
	# the driver tests (TAP 061) call orderexp from psycopg 3
	python3-psycopg
	# TAP 063 scrapes orderexp's metrics (contrib/postgres_exporter.yml)
	prometheus-postgres-exporter
	# the Debian packages (debian/, test kind "package"): pg_buildext,
	# debhelper; the relay's package wants adduser
	postgresql-server-dev-all
	debhelper
	adduser
	# the partitioned-table tests make their partitions with pg_partman
	"postgresql-$OX_PG_MAJOR-partman"
	# scripts/report.sh (conversion charts) and its test
	gnuplot-nox
	# bench/consume.sh measures consumption against PgQ (its ticker daemon
	# pgqd comes with it, though the benchmark ticks by itself)
	"postgresql-$OX_PG_MAJOR-pgq3"
	pgqd
)

# state, for the clean-up trap
OX_TMPDIRS=()			# temp dirs to remove at exit
OX_CLUSTERS=()			# data dirs of clusters we started
OX_EXIT_HOOKS=()		# commands run first at exit (callers' own clean-up)
OX_CLEANED=0
OX_BUILD_DIR=
OX_PGHOST=
OX_PGPORT=
OX_PGDATA=
OX_PGLOG=

# ---------------------------------------------------------------------------
# messages
# ---------------------------------------------------------------------------

ox_log() { printf '==> %s\n' "$*"; }
ox_warn() { printf 'WARNING: %s\n' "$*" >&2; }
ox_die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# clean-up: runs on EXIT, INT and TERM, even after a failure; idempotent
# ---------------------------------------------------------------------------

# ox_at_exit CMD...: run CMD (one string, eval'ed) first when the script ends
ox_at_exit() { OX_EXIT_HOOKS+=("$*"); }

# stop one cluster by its data dir, politely first; never fails
ox_stop_datadir() {
	local data=$1 pid
	[[ -f $data/postmaster.pid ]] || return 0
	if ! runuser -u postgres -- "$OX_PGBIN/pg_ctl" -D "$data" stop -m fast -w -t 30 >/dev/null 2>&1; then
		runuser -u postgres -- "$OX_PGBIN/pg_ctl" -D "$data" stop -m immediate -w -t 30 >/dev/null 2>&1 || true
	fi
	# last resort: the postmaster of this very data dir, by its pid
	if [[ -f $data/postmaster.pid ]]; then
		pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
		if [[ $pid =~ ^[0-9]+$ ]] && [[ -d /proc/$pid ]] &&
			[[ $(readlink "/proc/$pid/cwd" 2>/dev/null || true) == "$(readlink -f "$data")" ]]; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	return 0
}

ox_cleanup() {
	local hook dir data
	[[ $OX_CLEANED == 1 ]] && return 0
	OX_CLEANED=1
	set +e
	for hook in "${OX_EXIT_HOOKS[@]}"; do
		eval "$hook" >/dev/null 2>&1
	done
	for data in "${OX_CLUSTERS[@]}"; do
		ox_stop_datadir "$data"
	done
	# servers left by tests inside our temp dirs (TAP tests' own clusters,
	# when a runner was killed by a time-out): stop them too
	for dir in "${OX_TMPDIRS[@]}"; do
		[[ -d $dir ]] || continue
		while IFS= read -r pidfile; do
			ox_stop_datadir "$(dirname "$pidfile")"
		done < <(find "$dir" -name postmaster.pid -type f 2>/dev/null)
	done
	for dir in "${OX_TMPDIRS[@]}"; do
		[[ -n $dir && -d $dir ]] && rm -rf -- "$dir"
	done
	return 0
}

trap 'ox_cleanup' EXIT
trap 'ox_cleanup; exit 130' INT
trap 'ox_cleanup; exit 143' TERM

# ox_mktemp NAME VAR: a fresh temp dir owned by postgres, removed at exit,
# its path stored in VAR (not printed: a $(...) subshell would lose the
# clean-up registration)
ox_mktemp() {
	local _ox_tmp	# not "dir": that would shadow a caller's variable
	_ox_tmp=$(mktemp -d "/tmp/orderexp-$1.XXXXXX")
	OX_TMPDIRS+=("$_ox_tmp")
	chown postgres:postgres "$_ox_tmp"
	chmod 0700 "$_ox_tmp"
	printf -v "$2" '%s' "$_ox_tmp"
}

# ox_as_postgres CMD...: run CMD as postgres, with PostgreSQL's bin dir first
# on PATH and postgres's own HOME (root's is not readable for it)
ox_as_postgres() {
	runuser -u postgres -- env HOME=/var/lib/postgresql \
		PATH="$OX_PGBIN:/usr/local/bin:/usr/bin:/bin" "$@"
}

# ---------------------------------------------------------------------------
# packages
# ---------------------------------------------------------------------------

ox_install_packages() {
	local p status missing=()
	for p in "${OX_PACKAGES[@]}"; do
		status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
		[[ $status == installed ]] || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		ox_log "packages: all installed"
		return 0
	fi
	ox_log "packages: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
	id postgres >/dev/null 2>&1 || ox_die "user postgres missing after installing postgresql-$OX_PG_MAJOR"
}

# test/node's npm packages, as its package-lock.json pins them; a node and an
# npm that came some other way (NodeSource's nodejs has its own npm) are used
# as they are
ox_install_node_modules() {
	local dir=$OX_ROOT/test/node
	if [[ -f $dir/node_modules/standardwebhooks/package.json &&
		-f $dir/node_modules/pg/package.json ]]; then
		ox_log "node modules: installed"
		return 0
	fi
	if ! command -v npm >/dev/null 2>&1; then
		ox_log "node modules: installing nodejs and npm"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q
		apt-get install -y -q --no-install-recommends nodejs npm
	fi
	ox_log "node modules: npm ci in $dir"
	npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error ||
		ox_die "npm ci in $dir failed"
}

# ---------------------------------------------------------------------------
# build and install
# ---------------------------------------------------------------------------

ox_build() {
	local log
	ox_mktemp build OX_BUILD_DIR
	ox_log "build: copying $OX_ROOT to $OX_BUILD_DIR"
	# the work tree as it is (committed or not), less git and build outputs
	tar -C "$OX_ROOT" -cf - \
		--exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		--exclude=./results --exclude=./output_iso --exclude=./tmp_check \
		--exclude=./tmp_check_iso --exclude=./log --exclude='./regression.*' \
		--exclude=./test/results --exclude=./test/tmp_check --exclude=./bench/out \
		--exclude=./relay/orderexp-relay \
		. | tar -C "$OX_BUILD_DIR" -xf -
	chown -R postgres:postgres "$OX_BUILD_DIR"

	log=$OX_BUILD_DIR/build.log
	ox_log "build: make with_llvm=no (as postgres)"
	if ! ox_as_postgres make -C "$OX_BUILD_DIR" -j"$(nproc)" "${OX_MAKE_ARGS[@]}" >"$log" 2>&1; then
		cat "$log" >&2
		ox_die "build failed"
	fi
	[[ ${OX_QUIET_BUILD:-0} == 1 ]] || grep -E ': (warning|error):' "$log" || true

	ox_log "build: make with_llvm=no install (as root)"
	if ! make -C "$OX_BUILD_DIR" "${OX_MAKE_ARGS[@]}" install >"$log.install" 2>&1; then
		cat "$log.install" >&2
		ox_die "make install failed"
	fi
}

# everything a fresh machine needs before a cluster can be started
ox_setup() {
	[[ $EUID -eq 0 ]] || ox_die "run me as root (apt-get, make install, runuser)"
	ox_install_packages
	ox_install_node_modules
	[[ -x $OX_PGBIN/initdb ]] || ox_die "$OX_PGBIN/initdb not found"
	ox_build
}

# ---------------------------------------------------------------------------
# throwaway cluster
# ---------------------------------------------------------------------------

# is TCP port $1 free of listeners (v4 and v6)?
ox_port_free() {
	local hex
	hex=$(printf '%04X' "$1")
	! grep -qsE "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:0000 0A " /proc/net/tcp /proc/net/tcp6
}

# a port in 54000-54999 that nobody listens on
ox_pick_port() {
	local port
	for _ in $(seq 1 200); do
		port=$((54000 + RANDOM % 1000))
		if ox_port_free "$port" && ! compgen -G "/tmp/.s.PGSQL.$port*" >/dev/null; then
			printf '%s\n' "$port"
			return 0
		fi
	done
	ox_die "no free port in 54000-54999"
}

# ox_cluster_start [CONFIG-LINE...]: initdb and start a cluster as postgres
ox_cluster_start() {
	local dir line
	ox_mktemp cluster dir
	OX_PGDATA=$dir/data
	OX_PGHOST=$dir
	OX_PGLOG=$dir/postgresql.log
	OX_PGPORT=$(ox_pick_port)

	ox_log "cluster: initdb in $OX_PGDATA"
	if ! (cd "$dir" && ox_as_postgres "$OX_PGBIN/initdb" -D "$OX_PGDATA" -A trust -U postgres \
			-E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1); then
		cat "$dir/initdb.log" >&2
		ox_die "initdb failed"
	fi
	{
		echo "# throwaway cluster of orderexp's scripts"
		echo "listen_addresses = ''"
		echo "port = $OX_PGPORT"
		echo "unix_socket_directories = '$OX_PGHOST'"
		echo "fsync = off"
		echo "synchronous_commit = off"
		echo "full_page_writes = off"
		echo "log_line_prefix = '%m [%p] %q%b@%d '"
		for line in "$@"; do
			echo "$line"
		done
	} >>"$OX_PGDATA/postgresql.conf"

	ox_log "cluster: starting on port $OX_PGPORT, socket in $OX_PGHOST"
	OX_CLUSTERS+=("$OX_PGDATA")
	if ! (cd "$dir" && ox_as_postgres "$OX_PGBIN/pg_ctl" -D "$OX_PGDATA" -l "$OX_PGLOG" \
			-w -t 60 start >/dev/null); then
		tail -n 50 "$OX_PGLOG" >&2 || true
		ox_die "cluster did not start"
	fi
	export PGHOST=$OX_PGHOST PGPORT=$OX_PGPORT PGUSER=postgres
}

ox_cluster_stop() {
	[[ -n $OX_PGDATA ]] || return 0
	ox_log "cluster: stopping"
	ox_stop_datadir "$OX_PGDATA"
}

# ox_psql ARGS...: psql as root to our cluster, as the postgres role
ox_psql() {
	"$OX_PGBIN/psql" -X -h "$OX_PGHOST" -p "$OX_PGPORT" -U postgres -v ON_ERROR_STOP=1 "$@"
}
