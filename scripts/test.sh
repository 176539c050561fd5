#!/usr/bin/env bash
#
# scripts/test.sh - set everything up and run orderexp's whole test suite
#
# Usage:  bash scripts/test.sh        (as root, on Debian bookworm)
#
# On a fresh machine this installs the packages, builds and installs the
# extension (see scripts/lib.sh), starts a throwaway PostgreSQL 15 cluster
# with orderexp and pg_cron preloaded on a free port in 54000-54999, and runs
# from a build copy of the tree, as postgres:
#
#   regress    pg_regress:  REGRESS of the Makefile   (test/sql/*.sql vs
#                           test/expected/)
#   isolation  isolation:   ISOLATION of the Makefile (test/specs/*.spec)
#   tap        prove:       PROVE_TESTS (test/t/*.pl, PostgreSQL::Test::Cluster;
#                           these make clusters of their own)
#   pgtap      pg_prove:    test/pgtap/*.sql in a database orderexp_pgtap
#   package    the Debian packages (debian/): dpkg-buildpackage -us -uc -b in
#              a copy of the tree, installed (dpkg -i; with a private
#              OX_PG_CONFIG, unpacked into its root instead), checked, and
#              the pg_regress tests run again against the installed
#              package, the cluster restarted on its library
#
# The first three are `make installcheck`, run once per kind (the other kinds
# emptied on the command line) so that a failing regress test does not stop
# the isolation and TAP tests from running.  Each runner has a time-out.
#
# It ends with a summary and a last line "N passed, N failed", counting test
# units (one pg_regress or isolation test, one TAP or pgTAP file, one check
# of the packages).  Exit code
# 0 only if nothing failed and at least one test ran.  The cluster is stopped
# and the temp dirs removed on any exit.  .ci/run calls exactly this script.
#
# Environment (for quick local runs; CI sets none of them):
#   OX_TEST_ONLY="regress tap"   run only those kinds
#   OX_TIMEOUT_REGRESS, OX_TIMEOUT_ISOLATION, OX_TIMEOUT_TAP, OX_TIMEOUT_PGTAP,
#   OX_TIMEOUT_PACKAGE           time-outs of the runners, in seconds

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# time-outs of the runners, seconds (a normal run takes a fraction of these;
# the TAP files take some 420 s on 2 idle cores, and ran past the 480 s this
# was once on a busy machine, which then counted every file as failed)
TIMEOUT_REGRESS=${OX_TIMEOUT_REGRESS:-300}
TIMEOUT_ISOLATION=${OX_TIMEOUT_ISOLATION:-300}
TIMEOUT_TAP=${OX_TIMEOUT_TAP:-900}
TIMEOUT_PGTAP=${OX_TIMEOUT_PGTAP:-240}
TIMEOUT_PACKAGE=${OX_TIMEOUT_PACKAGE:-600}

ONLY=${OX_TEST_ONLY:-regress isolation tap pgtap package}

TOTAL_PASSED=0
TOTAL_FAILED=0
SUMMARY_LINES=()		# one line per kind of test
FAILED_UNITS=()			# kind/name of every failed unit
ANY_FAILED=0

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

wants() { [[ " $ONLY " == *" $1 "* ]]; }

# value of a variable of the project's Makefile, as make sees it
make_var() {
	# shellcheck disable=SC2016
	printf 'print-%%:\n\t@echo $($*)\n' |
		make --no-print-directory -s -C "$OX_BUILD_DIR" "PG_CONFIG=$OX_PG_CONFIG" -f Makefile -f - "print-$1" 2>/dev/null
}

# run_logged LOG TIMEOUT CMD...: run CMD as postgres in the build dir, with
# its output on the console and in LOG; returns CMD's exit status
run_logged() {
	local log=$1 limit=$2 rc=0
	shift 2
	(cd "$OX_BUILD_DIR" && ox_as_postgres timeout --kill-after=20 "$limit" "$@") 2>&1 |
		tee "$log" || rc=$?
	if [[ $rc == 124 || $rc == 137 ]]; then
		echo "*** timed out after ${limit}s: $*" | tee -a "$log"
	fi
	return "$rc"
}

# record KIND PASSED FAILED FAILED-NAMES...: add one kind's results
record() {
	local kind=$1 passed=$2 failed=$3 line
	shift 3
	TOTAL_PASSED=$((TOTAL_PASSED + passed))
	TOTAL_FAILED=$((TOTAL_FAILED + failed))
	((failed == 0)) || ANY_FAILED=1
	line=$(printf '%-10s %3d passed, %3d failed' "$kind" "$passed" "$failed")
	if (($# > 0)); then
		line+="   failed: $*"
		local n
		for n in "$@"; do FAILED_UNITS+=("$kind/$n"); done
	fi
	SUMMARY_LINES+=("$line")
}

# note KIND TEXT: a kind that ran nothing, with the reason
note() {
	SUMMARY_LINES+=("$(printf '%-10s %s' "$1" "$2")")
}

# parse_regress KIND LOG RC TESTS...: count pg_regress / isolation results.
# PostgreSQL 15 prints "test NAME ... ok|FAILED|failed (ignored)" (members of
# a parallel group without "test ").  Tests that never got a result line
# (runner died, timed out) count as failed when the runner failed.
parse_regress() {
	local kind=$1 log=$2 rc=$3 line name result t
	shift 3
	local -A seen=()
	local passed=0 failed=0 failed_names=()
	while IFS= read -r line; do
		if [[ $line =~ ^(test[[:space:]]+|[[:space:]]+)([^[:space:]]+)[[:space:]]+\.\.\.[[:space:]]+(ok|FAILED|failed\ \(ignored\)) ]]; then
			name=${BASH_REMATCH[2]}
			result=${BASH_REMATCH[3]}
			seen[$name]=1
			if [[ $result == FAILED ]]; then
				failed=$((failed + 1))
				failed_names+=("$name")
			else
				passed=$((passed + 1))
			fi
		fi
	done <"$log"
	if [[ $rc != 0 ]]; then
		for t in "$@"; do
			if [[ -z ${seen[$t]:-} ]]; then
				failed=$((failed + 1))
				failed_names+=("$t(no-result)")
			fi
		done
		if ((failed == 0)); then
			failed=1
			failed_names+=("runner(exit-$rc)")
		fi
	fi
	record "$kind" "$passed" "$failed" "${failed_names[@]}"
}

# parse_prove KIND LOG RC FILES...: count prove / pg_prove results per file.
# From "Files=N, Tests=M", "Result: PASS|FAIL" and the "Test Summary Report",
# whose entries "FILE (Wstat: W Tests: T Failed: F)" are failures when W or F
# is not 0 or when a "Parse errors:" / "Non-zero ... status:" / "Failed
# test(s):" line follows; an entry with only "TODO passed:" is no failure.
parse_prove() {
	local kind=$1 log=$2 rc=$3 line files='' result='' cur='' name
	shift 3
	local -A bad=()
	local order=() failed_names=() passed failed
	while IFS= read -r line; do
		if [[ $line =~ ^Files=([0-9]+),\ Tests= ]]; then
			files=${BASH_REMATCH[1]}
		elif [[ $line =~ ^Result:\ ([A-Z]+) ]]; then
			result=${BASH_REMATCH[1]}
		elif [[ $line =~ ^([^[:space:]]+)[[:space:]]+\(Wstat:\ ([0-9]+).*Failed:\ ([0-9]+)\) ]]; then
			cur=${BASH_REMATCH[1]}
			order+=("$cur")
			if [[ ${BASH_REMATCH[2]} != 0 || ${BASH_REMATCH[3]} != 0 ]]; then
				bad[$cur]=1
			fi
		elif [[ -n $cur && $line =~ ^[[:space:]]+(Parse\ errors|Non-zero\ exit\ status|Non-zero\ wait\ status|Failed\ tests?): ]]; then
			bad[$cur]=1
		fi
	done <"$log"
	if [[ -z $files ]]; then
		# The harness never got to its summary (killed: a time-out, say).
		# A file whose progress line says "ok" passed; every other one,
		# failed or never run, counts as failed.
		local -A ok=()
		local f
		while read -r f; do ok[$f]=1; done < <(awk '$2 ~ /^\.+$/ && $3 == "ok" { print $1 }' "$log")
		for f in "$@"; do
			[[ -n ${ok[$f]:-} ]] || failed_names+=("$f")
		done
		passed=$(($# - ${#failed_names[@]}))
		# no summary is a failure even if every file said ok
		((${#failed_names[@]} > 0)) || failed_names+=("runner(exit-$rc)")
		record "$kind" "$passed" "${#failed_names[@]}" "${failed_names[@]}"
		return
	fi
	if [[ $result != PASS ]]; then
		for name in "${order[@]}"; do
			[[ -n ${bad[$name]:-} ]] && failed_names+=("$name")
		done
	fi
	failed=${#failed_names[@]}
	if [[ $rc != 0 || $result != PASS ]] && ((failed == 0)); then
		failed=1
		failed_names+=("runner(exit-$rc)")
	fi
	passed=$((files - ${#failed_names[@]}))
	((passed >= 0)) || passed=0
	# files the harness never counted (killed half-way) are failures too
	if ((files < $#)) && [[ $rc != 0 ]]; then
		failed=$((failed + $# - files))
		failed_names+=("$(($# - files))-file(s)-not-run")
	fi
	record "$kind" "$passed" "$failed" "${failed_names[@]}"
}

# names of the listed tests whose input or expected output is missing
missing_files() {
	local dir=$1 ext=$2 t
	shift 2
	for t in "$@"; do
		[[ -f $OX_BUILD_DIR/test/$dir/$t.$ext ]] || printf '%s ' "test/$dir/$t.$ext"
		[[ -f $OX_BUILD_DIR/test/expected/$t.out ]] || printf '%s ' "test/expected/$t.out"
	done
}

show_file() {
	local title=$1 file=$2 lines=$3
	[[ -s $file ]] || return 0
	echo "----- $title ($file, first $lines lines) -----"
	head -n "$lines" "$file"
}

show_tail() {
	local file=$1 lines=$2
	[[ -s $file ]] || return 0
	echo "----- tail of $file -----"
	tail -n "$lines" "$file"
}

# ---------------------------------------------------------------------------
# 1. set-up and cluster
# ---------------------------------------------------------------------------

START=$SECONDS
export OX_QUIET_BUILD=1
ox_setup
LOGS=$OX_BUILD_DIR/test-logs
mkdir -p "$LOGS"
chown postgres:postgres "$LOGS"

ox_cluster_start \
	"shared_preload_libraries = 'orderexp,pg_cron'" \
	"cron.database_name = 'postgres'" \
	"orderexp.databases = 'postgres'" \
	"max_worker_processes = 16" \
	"max_prepared_transactions = 10"

MAKE_CONN=(PGHOST="$OX_PGHOST" PGPORT="$OX_PGPORT" PGUSER=postgres)

# ---------------------------------------------------------------------------
# 2. pg_regress, isolation, TAP: make installcheck, one kind at a time
# ---------------------------------------------------------------------------

REGRESS_TESTS=$(make_var REGRESS)
ISOLATION_TESTS=$(make_var ISOLATION)
TAP_ENABLED=$(make_var TAP_TESTS)
# shellcheck disable=SC2016
TAP_FILES=$(cd "$OX_BUILD_DIR" && make_var 'PROVE_TESTS' | xargs -r -n1 | while read -r g; do compgen -G "$g" || true; done | sort | xargs)

if wants regress; then
	if [[ -z $REGRESS_TESTS ]]; then
		note regress "no REGRESS tests in the Makefile"
	else
		ox_log "regress: $REGRESS_TESTS"
		# shellcheck disable=SC2086
		miss=$(missing_files sql sql $REGRESS_TESTS)
		[[ -z $miss ]] || ox_warn "regress: missing files: $miss"
		rc=0
		run_logged "$LOGS/regress.log" "$TIMEOUT_REGRESS" \
			make "${OX_MAKE_ARGS[@]}" installcheck ISOLATION= TAP_TESTS= "${MAKE_CONN[@]}" || rc=$?
		# shellcheck disable=SC2086
		parse_regress regress "$LOGS/regress.log" "$rc" $REGRESS_TESTS
		[[ $rc == 0 ]] || show_file "regression diffs" "$OX_BUILD_DIR/regression.diffs" 300
	fi
fi

if wants isolation; then
	if [[ -z $ISOLATION_TESTS ]]; then
		note isolation "no ISOLATION tests in the Makefile"
	else
		ox_log "isolation: $ISOLATION_TESTS"
		# shellcheck disable=SC2086
		miss=$(missing_files specs spec $ISOLATION_TESTS)
		[[ -z $miss ]] || ox_warn "isolation: missing files: $miss"
		rc=0
		run_logged "$LOGS/isolation.log" "$TIMEOUT_ISOLATION" \
			make "${OX_MAKE_ARGS[@]}" installcheck REGRESS= TAP_TESTS= "${MAKE_CONN[@]}" || rc=$?
		# shellcheck disable=SC2086
		parse_regress isolation "$LOGS/isolation.log" "$rc" $ISOLATION_TESTS
		[[ $rc == 0 ]] || show_file "isolation diffs" "$OX_BUILD_DIR/output_iso/regression.diffs" 300
	fi
fi

if wants tap; then
	if [[ -z $TAP_ENABLED ]]; then
		note tap "TAP_TESTS not set in the Makefile"
	elif [[ -z $TAP_FILES ]]; then
		note tap "no TAP test files yet ($(make_var PROVE_TESTS))"
	else
		ox_log "tap: $TAP_FILES"
		rc=0
		run_logged "$LOGS/tap.log" "$TIMEOUT_TAP" \
			make "${OX_MAKE_ARGS[@]}" installcheck REGRESS= ISOLATION= "${MAKE_CONN[@]}" || rc=$?
		# shellcheck disable=SC2086
		parse_prove tap "$LOGS/tap.log" "$rc" $TAP_FILES
		if [[ $rc != 0 ]]; then
			# logs of the failed test files; of all of them if none was named
			named=$(printf '%s\n' "${FAILED_UNITS[@]}" | sed -n 's|^tap/\(.*\.pl\)$|\1|p')
			for f in ${named:-$TAP_FILES}; do
				base=$(basename "$f" .pl)
				show_tail "$OX_BUILD_DIR/tmp_check/log/regress_log_$base" 80
				for nl in "$OX_BUILD_DIR/tmp_check/log/${base}"_*.log; do
					show_tail "$nl" 30
				done
			done
		fi
	fi
fi

# ---------------------------------------------------------------------------
# 3. pgTAP, in a database of the throwaway cluster
# ---------------------------------------------------------------------------

if wants pgtap; then
	PGTAP_FILES=$(cd "$OX_BUILD_DIR" && { compgen -G 'test/pgtap/*.sql' || true; } | sort | xargs)
	if [[ -z $PGTAP_FILES ]]; then
		note pgtap "no pgTAP test files yet (test/pgtap/*.sql)"
	else
		ox_log "pgtap: $PGTAP_FILES"
		PGOPTIONS='-c client_min_messages=warning' \
			ox_psql -q -d postgres -c 'DROP DATABASE IF EXISTS orderexp_pgtap' \
			-c 'CREATE DATABASE orderexp_pgtap'
		rc=0
		# shellcheck disable=SC2086
		run_logged "$LOGS/pgtap.log" "$TIMEOUT_PGTAP" \
			pg_prove -h "$OX_PGHOST" -p "$OX_PGPORT" -U postgres -d orderexp_pgtap \
			$PGTAP_FILES || rc=$?
		# shellcheck disable=SC2086
		parse_prove pgtap "$LOGS/pgtap.log" "$rc" $PGTAP_FILES
	fi
fi

# ---------------------------------------------------------------------------
# 4. the Debian packages: built, installed, checked, regression tests again
# ---------------------------------------------------------------------------

# pkg_check NAME CMD...: one check of the packages, as a unit of the summary
PKG_PASSED=0
PKG_FAILED=0
PKG_FAILED_NAMES=()
pkg_check() {
	local name=$1
	shift
	if "$@" >>"$LOGS/package.log" 2>&1; then
		echo "ok     package: $name"
		PKG_PASSED=$((PKG_PASSED + 1))
	else
		echo "FAILED package: $name"
		PKG_FAILED=$((PKG_FAILED + 1))
		PKG_FAILED_NAMES+=("$name")
	fi
}

# the file FILE of the package DEB has the same content as PATH
same_as_in_deb() {
	local deb=$1 file=$2 path=$3
	cmp <(dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ".$file") "$path"
}

if wants package; then
	PKG_LIB=$("$OX_PG_CONFIG" --pkglibdir)
	PKG_SHARE=$("$OX_PG_CONFIG" --sharedir)
	# the root the packages' paths are relative to: / for Debian's
	# PostgreSQL, the private copy's root for a relocated one
	PKG_ROOT=${PKG_LIB%/usr/lib/postgresql/"$OX_PG_MAJOR"/lib}
	if [[ $PKG_ROOT == "$PKG_LIB" ]]; then
		record package 0 1 "pg_config-layout-not-Debian's($PKG_LIB)"
	else
		ox_mktemp package PKG_DIR
		mkdir "$PKG_DIR/src"
		tar -C "$OX_ROOT" -cf - \
			--exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
			--exclude=./results --exclude=./output_iso --exclude=./tmp_check \
			--exclude=./tmp_check_iso --exclude=./log --exclude='./regression.*' \
			--exclude=./test/node/node_modules --exclude=./bench/out \
			--exclude=./relay/orderexp-relay \
			. | tar -C "$PKG_DIR/src" -xf -
		ox_log "package: dpkg-buildpackage -us -uc -b in $PKG_DIR/src"
		: >"$LOGS/package.log"
		pkg_check "dpkg-buildpackage -us -uc -b" \
			bash -c "cd '$PKG_DIR/src' && timeout --kill-after=20 $TIMEOUT_PACKAGE dpkg-buildpackage -us -uc -b"
		EXT_DEB=$(compgen -G "$PKG_DIR/postgresql-$OX_PG_MAJOR-orderexp_*_*.deb" || true)
		RELAY_DEB=$(compgen -G "$PKG_DIR/orderexp-relay_*_*.deb" || true)
		pkg_check "two packages built" test -f "$EXT_DEB" -a -f "$RELAY_DEB"
		if [[ -f $EXT_DEB && -f $RELAY_DEB ]]; then
			if [[ -z $PKG_ROOT ]]; then
				ox_log "package: dpkg -i $(basename "$EXT_DEB") $(basename "$RELAY_DEB")"
				pkg_check "dpkg -i" dpkg -i "$EXT_DEB" "$RELAY_DEB"
				pkg_check "orderexp.so belongs to postgresql-$OX_PG_MAJOR-orderexp" \
					bash -c "dpkg -S '$PKG_LIB/orderexp.so' | grep -q '^postgresql-$OX_PG_MAJOR-orderexp:'"
				pkg_check "system user orderexp-relay" id orderexp-relay
				pkg_check "/etc/orderexp is 0750 root:orderexp-relay" \
					bash -c "[[ \$(stat -c '%a %U:%G' /etc/orderexp) == '750 root:orderexp-relay' ]]"
			else
				ox_log "package: unpacking into $PKG_ROOT (private PostgreSQL)"
				pkg_check "dpkg-deb -x into $PKG_ROOT" \
					bash -c "dpkg-deb -x '$EXT_DEB' '$PKG_ROOT' && dpkg-deb -x '$RELAY_DEB' '$PKG_ROOT'"
			fi
			pkg_check "installed orderexp.so is the package's" \
				same_as_in_deb "$EXT_DEB" "/usr/lib/postgresql/$OX_PG_MAJOR/lib/orderexp.so" "$PKG_LIB/orderexp.so"
			pkg_check "installed orderexp--1.3.sql is the package's" \
				same_as_in_deb "$EXT_DEB" "/usr/share/postgresql/$OX_PG_MAJOR/extension/orderexp--1.3.sql" \
				"$PKG_SHARE/extension/orderexp--1.3.sql"
			pkg_check "orderexp-relay --version runs" "$PKG_ROOT/usr/bin/orderexp-relay" --version
			pkg_check "systemd unit runs /usr/bin/orderexp-relay" \
				grep -q '^ExecStart=/usr/bin/orderexp-relay ' "$PKG_ROOT/lib/systemd/system/orderexp-relay.service"
			pkg_check "sample config /etc/orderexp/relay.conf.example" \
				test -f "$PKG_ROOT/etc/orderexp/relay.conf.example"
			pkg_check "exporter queries among the examples" \
				test -f "$PKG_ROOT/usr/share/doc/postgresql-$OX_PG_MAJOR-orderexp/examples/postgres_exporter.yml"
		fi
		record package "$PKG_PASSED" "$PKG_FAILED" "${PKG_FAILED_NAMES[@]}"
		if ((PKG_FAILED > 0)); then
			show_tail "$LOGS/package.log" 60
		elif [[ -n $REGRESS_TESTS ]]; then
			# the server loads the package's library at its start
			ox_log "package: restarting the cluster, pg_regress against the installed package"
			(cd "$OX_PGHOST" && ox_as_postgres "$OX_PGBIN/pg_ctl" -D "$OX_PGDATA" -l "$OX_PGLOG" \
				-w -t 60 -m fast restart >/dev/null)
			rc=0
			run_logged "$LOGS/package-regress.log" "$TIMEOUT_REGRESS" \
				make "${OX_MAKE_ARGS[@]}" installcheck ISOLATION= TAP_TESTS= "${MAKE_CONN[@]}" || rc=$?
			# shellcheck disable=SC2086
			parse_regress pkg-regress "$LOGS/package-regress.log" "$rc" $REGRESS_TESTS
			[[ $rc == 0 ]] || show_file "regression diffs" "$OX_BUILD_DIR/regression.diffs" 300
		fi
	fi
fi

# ---------------------------------------------------------------------------
# 5. summary
# ---------------------------------------------------------------------------

if grep -qE 'terminated by signal|was terminated by exception|PANIC:' "$OX_PGLOG"; then
	ox_warn "the test cluster's server log shows a crash:"
	grep -nE 'terminated by signal|was terminated by exception|PANIC:' "$OX_PGLOG" | head -n 20 >&2
	record server 0 1 crash-in-server-log
fi
if ((ANY_FAILED)); then
	show_tail "$OX_PGLOG" 40
fi

ox_cluster_stop

echo
echo "=============== orderexp test summary ==============="
for line in "${SUMMARY_LINES[@]}"; do
	echo "$line"
done
if ((${#FAILED_UNITS[@]} > 0)); then
	echo "failed units:"
	printf '  %s\n' "${FAILED_UNITS[@]}"
fi
echo "time: $((SECONDS - START)) s"
echo "====================================================="
if ((TOTAL_PASSED + TOTAL_FAILED == 0)); then
	echo "no test ran" >&2
	ANY_FAILED=1
fi
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
((ANY_FAILED == 0))
