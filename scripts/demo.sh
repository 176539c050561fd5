#!/usr/bin/env bash
#
# scripts/demo.sh - live demo of orderexp's main job: unpaid orders close
# themselves at their deadline, with an event in the outbox and a NOTIFY;
# before that, the customer gets a reminder with a link to extend the order
#
# Usage:  bash scripts/demo.sh        (as root, on Debian bookworm)
#
# Sets everything up (scripts/lib.sh: packages, build, install), starts a
# throwaway cluster with orderexp preloaded, orderexp.databases = 'shop' and
# orderexp.naptime = 200, and then:
#
#   1. creates the database "shop" only now, after the server started, and
#      shows the background worker picking it up once the extension is there;
#   2. makes a shop table "orders" and gives it a close policy: unpaid orders
#      close 8 seconds after they were created, a reminder goes out 5 seconds
#      before the deadline, and the customer may extend the order once, by
#      10 seconds, through the link in the reminder;
#   3. starts a live feed: a psql session that LISTENs on "orderexp" and
#      prints every outbox event as it arrives, the way a listener would
#      send it (scripts/demo/feed_step.sql): reminders with their extension
#      link, the confirmation of an extension, closes, cancellations;
#   4. inserts 8 orders, pays some, cancels one, extends one (the shop does),
#      shows orderexp.pending; then a customer clicks the link of a reminder
#      (extend_order_by_token with the token taken from the outbox), clicks it
#      again and is refused, gets a second reminder for the new deadline
#      (without a link: the one extension is used up), another customer pays
#      between reminder and deadline, and a payment comes too late;
#   4b. in a second table whose customers chose their channels (column
#      prefers, channels_column): ivan gets his reminder by SMS only; judy's
#      e-mail is refused for good by the SMTP server (550, test/relay_smtp.py)
#      and one SMS reminder with the same link goes instead (the fallback,
#      in her history); kate's e-mail is refused for now (451), she pays
#      before the retry, and her reminder is withheld, never sent; support
#      explains ivan's closed order with explain_order(), and
#      orderexp.unreachable lists judy's address;
#   5. all along, orderexp-relay (the delivery program, relay/), started
#      after the feed as a role that is a member of orderexp_relay, delivers
#      the events as they come: the sms channel's through its SMS sink to a
#      fake of Twilio's API on loopback (test/relay_sms.py), the e-mail
#      channel's to stdout.  When everything has happened (about 21 s) the
#      demo stops it with SIGTERM and shows a few of its JSON lines, the
#      text messages the provider got, the relay's log (with the SMS
#      segments) and orderexp.delivery_stats; then prints the final
#      state and checks it: paid orders were never closed, each closed order has one
#      'closed' event per channel, the extended orders closed at their new
#      deadlines, reminders went out once per channel per deadline to the
#      orders still unpaid, the reused link was refused, the order paid after
#      its reminder was not closed, the relay delivered every event once,
#      every sms-channel event as one text message to the order's phone.
#
# Ends by itself: exit 0 if every check passed.  The cluster is stopped and
# the temp dirs removed on any exit.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEMO_DIR=$OX_ROOT/scripts/demo
FEED_POLLS=200			# at 0.3 s a poll: the feed gives up after about a minute

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

now() { date +%H:%M:%S.%3N; }
ms() { echo $(($(date +%s%N) / 1000000)); }

# say TEXT: a step of the demo, time-stamped like the feed's lines
say() { printf '\n%s demo | %s\n' "$(now)" "$*"; }

# indent: the demo's output column (blank lines dropped)
indent() { sed '/^ *$/d; s/^/             /'; }

# sql TEXT: show a statement the way psql would, and run it in shop
sql() {
	printf '%s\n' "$1" | sed '1s/^/             shop=# /; 2,$s/^/             shop-# /'
	ox_psql -d shop -P footer=off -c "$1" | indent
}

# sql_vars 'NAME=VALUE ...' TEXT: like sql, with psql variables set (shown
# as \set lines) and interpolated into TEXT (-c would not interpolate);
# psql's error messages are shown too, the whole output is left in SQL_OUT,
# and the status is psql's (the caller decides whether an error is fatal)
SQL_OUT=
sql_vars() {
	local vars=$1 text=$2 v args=() rc=0
	for v in $vars; do
		printf '             shop=# \\set %s %s\n' "${v%%=*}" "'${v#*=}'"
		args+=(-v "$v")
	done
	printf '%s\n' "$text" | sed '1s/^/             shop=# /; 2,$s/^/             shop-# /'
	SQL_OUT=$(printf '%s\n' "$text" | ox_psql -d shop -P footer=off -v SHOW_CONTEXT=never "${args[@]}" -f - 2>&1) || rc=$?
	printf '%s\n' "$SQL_OUT" | sed 's/^psql:<stdin>:[0-9]*: //' | indent
	return "$rc"
}

# value QUERY: one value from shop
value() { ox_psql -d shop -At -c "$1"; }

# server_ready DIR LOG WHAT: wait up to 10 s for a test server (test/relay_*.py)
# to touch DIR/ready; stop the demo with its log if it does not
server_ready() {
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -e $1/ready ]] && return 0
		sleep 0.1
	done
	ox_die "$3 did not start: $(cat "$2")"
}

# wait_for SECONDS QUERY: poll QUERY until it returns t; false on time-out
wait_for() {
	local limit=$1 query=$2 end
	end=$((SECONDS + limit))
	while ((SECONDS < end)); do
		[[ $(value "$query" 2>/dev/null || true) == t ]] && return 0
		sleep 0.2
	done
	return 1
}

# ---------------------------------------------------------------------------
# set-up and cluster
# ---------------------------------------------------------------------------

export OX_QUIET_BUILD=1
ox_setup
ox_cluster_start \
	"shared_preload_libraries = 'orderexp'" \
	"orderexp.databases = 'shop'" \
	"orderexp.naptime = 200"

echo
echo "==================== orderexp live demo ===================="
say "server is up, orderexp.databases = 'shop', but there is no database shop yet:"
ox_psql -d postgres -P footer=off -c \
	"SELECT backend_type, datname FROM pg_stat_activity
	  WHERE backend_type LIKE 'orderexp%' ORDER BY backend_type" | indent

# ---------------------------------------------------------------------------
# 1. the database appears after the server started
# ---------------------------------------------------------------------------

say "createdb shop, CREATE EXTENSION orderexp"
T0=$(ms)
ox_psql -d postgres -q -c 'CREATE DATABASE shop'
sql 'CREATE EXTENSION orderexp'
if wait_for 20 "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                WHERE backend_type = 'orderexp worker' AND datname = 'shop')"; then
	say "the launcher picked the new database up: a worker for shop runs ($(($(ms) - T0)) ms after CREATE DATABASE)"
else
	ox_die "no orderexp worker appeared for database shop within 20 s"
fi

# ---------------------------------------------------------------------------
# 2. the shop's own table and its close policy
# ---------------------------------------------------------------------------

say "the shop's orders table, and its close policy"
sql "CREATE TABLE public.orders (
    id bigserial PRIMARY KEY,
    customer text,
    email text,
    phone text,
    amount numeric,
    status text NOT NULL DEFAULT 'unpaid',
    created_at timestamptz NOT NULL DEFAULT now())"
sql "SELECT orderexp.set_close_policy('orders',
         close_after => '8 seconds', remind_before => '5 seconds',
         extend_by => '10 seconds', max_extensions => 1,
         payload_columns => '{customer,email,phone,amount}', channels => '{email,sms}') AS policy_id"
say "a second table, where each customer chose their channels (column prefers, in order); its e-mail channel is called mail and goes through an SMTP server; when a reminder cannot be delivered, the next channel gets one while 5 s are left"
sql "CREATE TABLE public.prefs (
    id bigserial PRIMARY KEY,
    customer text,
    email text,
    phone text,
    prefers text[],
    status text NOT NULL DEFAULT 'unpaid',
    created_at timestamptz NOT NULL DEFAULT now())"
sql "SELECT orderexp.set_close_policy('prefs',
         close_after => '16 seconds', remind_before => '12 seconds',
         extend_by => '10 seconds', max_extensions => 1,
         payload_columns => '{customer,email,phone}', channels => '{mail,sms}',
         channels_column => 'prefers', contact_columns => '{mail=email,sms=phone}',
         fallback_before => '5 seconds') AS policy_id"

# ---------------------------------------------------------------------------
# 3. the live feed
# ---------------------------------------------------------------------------

ox_mktemp demo WORK
PY3=python3
[[ -x /usr/bin/python3 ]] && PY3=/usr/bin/python3
FEED_SQL=$WORK/feed.sql
STOP_FILE=$WORK/feed.stop
{
	echo "-- generated by scripts/demo.sh: the live feed, $FEED_POLLS polls at most"
	printf '%s\n' "\\set stopfile '$STOP_FILE'"
	echo "CREATE TEMP TABLE feed_seen (id bigint PRIMARY KEY);"
	echo "LISTEN orderexp;"
	for ((i = 0; i < FEED_POLLS; i++)); do
		printf '%s\n' "\\i '$DEMO_DIR/feed_step.sql'" '\if :stop' '\q' '\endif'
	done
} >"$FEED_SQL"

# one line per event; psql's "Asynchronous notification ..." lines become a
# short marker
feed() {
	local line p
	ox_psql -d shop -q -At -f "$FEED_SQL" 2>&1 | while IFS= read -r line; do
		if [[ $line =~ ^Asynchronous\ notification\ \"orderexp\"\ with\ payload\ \"(.*)\"\ received ]]; then
			p=${BASH_REMATCH[1]}
			p=${p//\\\"/\"}
			printf '%s feed |   (NOTIFY orderexp %s)\n' "$(now)" "${p// : /:}"
		else
			printf '             feed | %s\n' "$line"
		fi
	done
}
say "live feed: a psql session LISTENs on orderexp and prints each outbox event"
feed &
FEED_PID=$!
# if the demo stops early the feed quits at its next poll (and at the latest
# when the cluster goes down)
ox_at_exit "touch '$STOP_FILE'"
sleep 0.5

# ---------------------------------------------------------------------------
# the relay, delivering as the events come
# ---------------------------------------------------------------------------

say "the relay: orderexp-relay claims the events as they come, delivers them (the sms channel's as text messages through a fake of Twilio's API, the rest as one JSON line each on stdout) and acks them; it runs in the background, its work is shown at the end"
sql "CREATE ROLE relay LOGIN IN ROLE orderexp_relay"
RELAY_OUT=$WORK/relay.out
RELAY_ERR=$WORK/relay.err
SMS_DIR=$WORK/sms
SMS_ACCOUNT=AC0000000000000000000000000000demo
mkdir "$SMS_DIR"
(umask 077 && echo demo-auth-token >"$WORK/sms.token")
SMS_PORT=$(ox_pick_port)
python3 "$OX_ROOT/test/relay_sms.py" "$SMS_PORT" "$SMS_DIR" "$SMS_ACCOUNT" demo-auth-token \
	>"$WORK/sms.log" 2>&1 &
SMS_PID=$!
ox_at_exit "kill $SMS_PID"
server_ready "$SMS_DIR" "$WORK/sms.log" "the fake SMS provider"
# an SMTP server for the mail channel (test/relay_smtp.py): it refuses
# nobody@ for good (550) and busy@ for now (451)
SMTP_DIR=$WORK/smtp
mkdir "$SMTP_DIR"
SMTP_PORT=$(ox_pick_port)
# Debian's python3, which has python3-aiosmtpd (another python3 may come first on PATH)
"$PY3" "$OX_ROOT/test/relay_smtp.py" "$SMTP_PORT" "$SMTP_DIR" >"$WORK/smtp.log" 2>&1 &
SMTP_PID=$!
ox_at_exit "kill $SMTP_PID"
server_ready "$SMTP_DIR" "$WORK/smtp.log" "the SMTP server"
printf '             $ orderexp-relay -d "host=%s port=%s dbname=shop user=relay" -v \\\n' \
	"$OX_PGHOST" "$OX_PGPORT"
printf '                 --sms http://127.0.0.1:%s --sms-provider twilio --sms-account %s \\\n' \
	"$SMS_PORT" "$SMS_ACCOUNT"
printf '                 --sms-token-file sms.token --sms-from +15005550006 --stdout \\\n'
printf '                 --smtp smtp://127.0.0.1:%s --smtp-from shop@example.com \\\n' "$SMTP_PORT"
printf "                 --route 'channel=sms:sms' --route 'channel=mail:smtp' --route '*:stdout' &\n"
"$OX_PGBIN/orderexp-relay" -d "host=$OX_PGHOST port=$OX_PGPORT dbname=shop user=relay" -v \
	--sms "http://127.0.0.1:$SMS_PORT" --sms-provider twilio --sms-account "$SMS_ACCOUNT" \
	--sms-token-file "$WORK/sms.token" --sms-from +15005550006 --stdout \
	--smtp "smtp://127.0.0.1:$SMTP_PORT" --smtp-from shop@example.com \
	--route 'channel=sms:sms' --route 'channel=mail:smtp' --route '*:stdout' >"$RELAY_OUT" 2>"$RELAY_ERR" &
RELAY_PID=$!
ox_at_exit "kill $RELAY_PID"
for ((i = 0; i < 100; i++)); do
	grep -q ': connected' "$RELAY_ERR" 2>/dev/null && break
	sleep 0.1
done
grep -q ': connected' "$RELAY_ERR" || ox_die "the relay did not connect: $(cat "$RELAY_ERR")"

# ---------------------------------------------------------------------------
# 4. orders come in, some are paid, one is cancelled, one is extended
# ---------------------------------------------------------------------------

say "4 orders come in (reminder 3 s after created_at, deadline 8 s after it)"
sql "INSERT INTO orders (customer, email, phone, amount) VALUES
    ('alice', 'alice@example.com', '+15550100001', 19.90),
    ('bob',   'bob@example.com',   '+15550100002', 5.00),
    ('carol', 'carol@example.com', '+15550100003', 42.00),
    ('dave',  'dave@example.com',  '+15550100004', 7.50)
RETURNING id, customer, status, created_at::time(1)"
sleep 1

say "bob pays order 2, carol cancels order 3 (before their reminders: they get none)"
sql "UPDATE orders SET status = 'paid' WHERE id = 2 AND status = 'unpaid'"
sql "SELECT orderexp.cancel_order('orders', 3::bigint, 'customer changed their mind') AS cancelled"
sleep 1

say "4 more orders come in"
sql "INSERT INTO orders (customer, email, phone, amount) VALUES
    ('erin',  'erin@example.com',  '+15550100005', 12.00),
    ('frank', 'frank@example.com', '+15550100006', 99.99),
    ('grace', 'grace@example.com', '+15550100007', 3.25),
    ('heidi', 'heidi@example.com', '+15550100008', 60.00)
RETURNING id, customer, status, created_at::time(1)"

say "erin phones the shop, which gives order 5 more time (extend_by: 10 s); frank pays order 6"
sql "SELECT orderexp.extend_order('orders', 5::bigint) AS new_deadline"
sql "UPDATE orders SET status = 'paid' WHERE id = 6 AND status = 'unpaid'"

say "what orderexp is waiting for:"
sql "SELECT order_key, remind_at::time(1) AS remind_at, close_at::time(1) AS close_at,
       extensions, date_trunc('second', time_left) AS time_left
  FROM orderexp.pending"

# ---------------------------------------------------------------------------
# reminders, and a customer who extends the order through its link
# ---------------------------------------------------------------------------

say "waiting for the first reminders (orders 1 and 4) ..."
wait_for 15 "SELECT count(DISTINCT order_key) = 2 FROM orderexp.outbox
              WHERE kind = 'reminder' AND order_key IN ('1', '4')" ||
	ox_warn "no reminders for orders 1 and 4 yet"
sleep 0.5

# the link in dave's reminder, as his e-mail has it
TOKEN=$(value "SELECT payload ->> 'extension_token' FROM orderexp.outbox
                WHERE kind = 'reminder' AND order_table = 'orders'::regclass
                  AND order_key = '4' ORDER BY id LIMIT 1")
[[ -n $TOKEN ]] || ox_warn "order 4's reminder has no extension token"
say "dave clicks the link in his reminder: https://shop.example/extend?token=$TOKEN"
say "the shop's web handler passes the token on:"
if ! sql_vars "token=$TOKEN" "SELECT orderexp.extend_order_by_token(:'token') AS new_deadline"; then
	ox_warn "the extension through dave's link failed"
fi
sleep 0.7

say "dave clicks the same link again (say, in a second browser tab)"
REUSE_ERR=
if sql_vars "token=$TOKEN" "SELECT orderexp.extend_order_by_token(:'token') AS new_deadline"; then
	ox_warn "the same link worked twice"
else
	REUSE_ERR=$(grep -m1 'ERROR:' <<<"$SQL_OUT" | sed 's/^.*ERROR: *//')
	say "refused, as it should be; the demo goes on"
fi

say "waiting for the reminders of orders 7 and 8 (order 6 is paid, order 5 was extended) ..."
wait_for 15 "SELECT count(DISTINCT order_key) = 2 FROM orderexp.outbox
              WHERE kind = 'reminder' AND order_key IN ('7', '8')" ||
	ox_warn "no reminders for orders 7 and 8 yet"
sleep 0.5

say "heidi pays order 8 after her reminder, before her deadline"
sql "UPDATE orders SET status = 'paid' WHERE id = 8 AND status = 'unpaid'"

say "what orderexp is waiting for now (remind_at is empty once the reminder went out):"
sql "SELECT order_key, remind_at::time(1) AS remind_at, close_at::time(1) AS close_at,
       extensions, date_trunc('second', time_left) AS time_left
  FROM orderexp.pending"

# ---------------------------------------------------------------------------
# waiting for the deadlines
# ---------------------------------------------------------------------------

say "waiting for the first deadlines (orders 1 and 7; heidi's order 8 is paid) ..."
wait_for 20 "SELECT count(*) = 2 FROM orders WHERE id IN (1, 7) AND status = 'closed'" ||
	ox_warn "orders 1 and 7 not both closed yet"
sleep 0.5

say "alice's payment for order 1 comes too late: the guarded update finds it closed"
sql "UPDATE orders SET status = 'paid' WHERE id = 1 AND status = 'unpaid' RETURNING id"

say "only the extended orders are still pending: 4 (by dave's link) and 5 (by the shop)"
sql "SELECT order_key, remind_at::time(1) AS remind_at, close_at::time(1) AS close_at,
       extensions, date_trunc('second', time_left) AS time_left
  FROM orderexp.pending"

say "waiting for the reminders of the new deadlines: order 4 again (no link: dave's one extension is used), order 5 ..."
wait_for 20 "SELECT count(*) FILTER (WHERE order_key = '4') = 2 AND count(*) FILTER (WHERE order_key = '5') = 1
               FROM (SELECT DISTINCT order_key, payload ->> 'close_at' FROM orderexp.outbox
                      WHERE kind = 'reminder') r" ||
	ox_warn "the reminders for orders 4 and 5 did not all come"

say "waiting for the extended deadlines of orders 4 and 5 ..."
wait_for 30 "SELECT NOT EXISTS (SELECT 1 FROM orders WHERE status = 'unpaid')" ||
	ox_warn "some orders are still unpaid after the wait"
sleep 0.5

# ---------------------------------------------------------------------------
# reaching the customer: the customer's channels, a fallback, a stale
# reminder held back, and an explanation
# ---------------------------------------------------------------------------

say "in the second table: ivan wants text messages only; judy prefers e-mail, then SMS, but her mailbox does not exist; kate's mail server is busy for now (reminder 4 s after the order, deadline 16 s after it)"
sql "INSERT INTO prefs (customer, email, phone, prefers) VALUES
    ('ivan', 'ivan@example.com',   '+15550200001', '{sms}'),
    ('judy', 'nobody@example.com', '+15550200002', '{mail,sms}'),
    ('kate', 'busy@example.com',   '+15550200003', '{mail}')
RETURNING id, customer, email, prefers"
say "waiting for the reminders, judy's refusal and kate's first failure ..."
wait_for 20 "SELECT EXISTS (SELECT 1 FROM orderexp.outbox_state WHERE order_table = 'prefs'::regclass
                              AND order_key = '2' AND kind = 'reminder' AND channel = 'sms'
                              AND delivered_at IS NOT NULL)
              AND EXISTS (SELECT 1 FROM orderexp.outbox_state WHERE order_table = 'prefs'::regclass
                              AND order_key = '3' AND kind = 'reminder' AND last_error IS NOT NULL)" ||
	ox_warn "judy's fallback or kate's failure did not come"
say "ivan's reminder went by SMS only; judy's e-mail was refused for good (550) and an SMS with the same link went instead; kate's e-mail waits for a retry:"
sql "SELECT order_key, channel, attempts, delivered_at IS NOT NULL AS delivered, dead_at IS NOT NULL AS dead,
       payload ? 'fallback_from' AS fallback, last_error
  FROM orderexp.outbox_state WHERE order_table = 'prefs'::regclass AND kind = 'reminder' ORDER BY id"
sql "SELECT action, via, reason FROM orderexp.history('prefs', 2::bigint)"
say "kate pays before the retry"
sql "UPDATE prefs SET status = 'paid' WHERE id = 3 AND status = 'unpaid' RETURNING id, customer, status"
say "waiting for kate's retry (some 10 s after the failure): her reminder would ask a customer who paid to pay, so it is withheld ..."
wait_for 25 "SELECT obsolete_at IS NOT NULL FROM orderexp.outbox
              WHERE order_table = 'prefs'::regclass AND order_key = '3' AND kind = 'reminder'" ||
	ox_warn "kate's stale reminder was not withheld"
sql "SELECT action, via, reason FROM orderexp.history('prefs', 3::bigint)"
say "waiting for the deadlines of ivan's and judy's orders ..."
wait_for 25 "SELECT count(*) = 2 FROM prefs WHERE status = 'closed'" ||
	ox_warn "ivan's and judy's orders did not both close"
sleep 0.5
say "ivan complains; support explains his closed order in the shop's words (orderexp.explain_order):"
sql "SELECT orderexp.explain_order('prefs', 1::bigint) AS explanation"
say "and the contacts the shop cannot reach (orderexp.unreachable):"
sql "SELECT order_table, order_key, channel, contact, why FROM orderexp.unreachable ORDER BY order_key"

# let the feed print its last rows and quit
touch "$STOP_FILE"
for ((i = 0; i < 50; i++)); do
	kill -0 "$FEED_PID" 2>/dev/null || break
	sleep 0.1
done
wait "$FEED_PID" 2>/dev/null || true

# ---------------------------------------------------------------------------
# the relay's work
# ---------------------------------------------------------------------------

# the relay stops at SIGTERM after its batch: exit status 0
say "stopping the relay (SIGTERM): it finishes its batch, prints its summary and exits"
kill -TERM "$RELAY_PID"
RELAY_RC=0
wait "$RELAY_PID" || RELAY_RC=$?
say "what the relay delivered as the events came: the e-mail channel's as JSON lines on stdout"
RELAY_LINES=$(wc -l <"$RELAY_OUT")
head -n 4 "$RELAY_OUT" | cut -c 1-220 | indent
printf '             ... (%s lines in all)\n' "$RELAY_LINES"
say "the text messages the fake SMS provider accepted (HTTP 201, like Twilio), the first few:"
SMS_SENT=$(python3 - "$SMS_DIR" <<'PY'
import glob, json, sys
reqs = [json.load(open(f)) for f in glob.glob(sys.argv[1] + "/req-*.json")]
print(sum(1 for r in reqs if r["status"] == 201 and r["form"]["To"][0].startswith("+155501")))
PY
)
python3 - "$SMS_DIR" <<'PY' | indent
import glob, json, sys
files = sorted(glob.glob(sys.argv[1] + "/req-*.json"),
               key=lambda f: int(f.rsplit("-", 1)[1].split(".")[0]))
shown = 0
for f in files:
    r = json.load(open(f))
    if shown < 3 and r["form"] and " is unpaid " in r["form"]["Body"][0]:
        print("%s to %s: %s" % (r["status"], r["form"]["To"][0], r["form"]["Body"][0]))
        shown += 1
PY
printf '             ... (%s text messages in all)\n' "$SMS_SENT"
say "the relay's log: its start, the first text messages (the number, masked, and the SMS segments), its summary"
awk '/: connected|^started|: started|summary/ || (/ SMS to / && n++ < 6) { sub(/^[0-9-]* [0-9:.]* UTC /, ""); print }' \
	"$RELAY_ERR" | indent
printf '             ... (%s lines in all)\n' "$(wc -l <"$RELAY_ERR")"
say "relay exit status $RELAY_RC; what is left to deliver:"
sql "SELECT kind, channel, pending, leased, retrying, delivered, dead FROM orderexp.delivery_stats ORDER BY kind, channel"

# ---------------------------------------------------------------------------
# 5. summary and checks
# ---------------------------------------------------------------------------

echo
echo "========================= summary =========================="
say "final state of every order, with its events"
sql "SELECT o.id, o.customer, o.amount, o.status,
       (SELECT string_agg(e.kind, ', ' ORDER BY e.id) FROM orderexp.outbox e
         WHERE e.order_table = 'orders'::regclass AND e.order_key = o.id::text) AS events
  FROM orders o ORDER BY o.id"

say "the reminders that went out"
sql "SELECT order_key, channel, created_at::time(1) AS sent,
       (payload ->> 'close_at')::timestamptz::time(1) AS closes_at,
       payload ->> 'extensions_left' AS ext_left,
       left(payload ->> 'extension_token', 12) || '…' ||
         right(payload ->> 'extension_token', 4) AS link_token
  FROM orderexp.outbox WHERE kind = 'reminder' ORDER BY id"

say "events by kind"
sql "SELECT kind, channel, count(*) FROM orderexp.outbox GROUP BY kind, channel ORDER BY kind"

say "the worker, as pg_stat_activity shows it"
sql "SELECT pid, backend_type, datname, state, wait_event,
       backend_start::time(0) AS started
  FROM pg_stat_activity WHERE backend_type LIKE 'orderexp%' ORDER BY backend_type"

say "checks"
CHECKS=$(
	ox_psql -d shop -At -F ' | ' -v reuse_err="$REUSE_ERR" \
		-v relay_rc="$RELAY_RC" -v relay_lines="$RELAY_LINES" -v sms_sent="$SMS_SENT" <<'EOF'
WITH
ev AS (SELECT * FROM orderexp.outbox_state WHERE order_table = 'orders'::regclass),
pev AS (SELECT * FROM orderexp.outbox_state WHERE order_table = 'prefs'::regclass),
rem AS (SELECT id, order_key, channel, created_at,
			   (payload ->> 'close_at')::timestamptz AS close_at,
			   (payload ->> 'remind_at')::timestamptz AS remind_at,
			   payload ->> 'extension_token' AS token,
			   (payload ->> 'extensions_left')::int AS extensions_left
		  FROM ev WHERE kind = 'reminder'),
-- deadlines each order had while unpaid at its reminder time: 2 and 6 were
-- paid and 3 cancelled before theirs, 4 was extended through its link
expected_rem(id, deadlines) AS (VALUES
	(1, 1), (2, 0), (3, 0), (4, 2), (5, 1), (6, 0), (7, 1), (8, 1)),
o4 AS (SELECT f.first_close, s.second_close,
			  (SELECT count(DISTINCT close_at) FROM rem WHERE order_key = '4') AS deadlines,
			  (SELECT bool_and(token IS NOT NULL AND extensions_left = 1) FROM rem
				WHERE order_key = '4' AND close_at = f.first_close) AS first_has_link,
			  (SELECT bool_and(token IS NULL AND extensions_left = 0) FROM rem
				WHERE order_key = '4' AND close_at = s.second_close) AS second_has_none,
			  (SELECT min((payload ->> 'close_at')::timestamptz) FROM ev
				WHERE kind = 'extended' AND order_key = '4' AND payload ->> 'via' = 'token') AS ext_close,
			  (SELECT min((payload ->> 'close_at')::timestamptz) FROM ev
				WHERE kind = 'closed' AND order_key = '4') AS closed_deadline,
			  (SELECT min(created_at) FROM ev WHERE kind = 'closed' AND order_key = '4') AS closed_at
		 FROM (SELECT min(close_at) AS first_close FROM rem WHERE order_key = '4') f,
			  (SELECT max(close_at) AS second_close FROM rem WHERE order_key = '4') s),
chans AS (SELECT channels FROM orderexp.tables WHERE order_table = 'orders'::regclass),
expected(id, status) AS (VALUES
	(1, 'closed'), (2, 'paid'), (3, 'cancelled'), (4, 'closed'),
	(5, 'closed'), (6, 'paid'), (7, 'closed'), (8, 'paid'))
SELECT CASE WHEN ok THEN 'PASS' ELSE 'FAIL' END, name, detail FROM (
SELECT 1 AS n, 'every order ended as expected' AS name,
	   NOT EXISTS (SELECT 1 FROM expected x FULL JOIN orders o USING (id)
				   WHERE o.status IS DISTINCT FROM x.status) AS ok,
	   (SELECT string_agg(format('%s:%s', id, status), ' ' ORDER BY id) FROM orders) AS detail
UNION ALL
SELECT 2, 'paid orders have no closed event',
	   NOT EXISTS (SELECT 1 FROM orders o JOIN ev ON ev.order_key = o.id::text
				   WHERE o.status = 'paid' AND ev.kind = 'closed'),
	   (SELECT string_agg(id::text, ',' ORDER BY id) FROM orders WHERE status = 'paid')
UNION ALL
SELECT 3, 'every closed order has exactly one closed event per channel',
	   NOT EXISTS (SELECT 1 FROM orders o, chans, unnest(chans.channels) ch
				   WHERE o.status = 'closed'
					 AND (SELECT count(*) FROM ev WHERE ev.kind = 'closed'
						   AND ev.order_key = o.id::text AND ev.channel = ch) <> 1)
	   AND NOT EXISTS (SELECT 1 FROM ev, chans WHERE ev.kind = 'closed'
						  AND (ev.channel <> ALL (chans.channels)
							   OR ev.order_key NOT IN (SELECT id::text FROM orders
													   WHERE status = 'closed'))),
	   (SELECT format('%s closed events for %s closed orders', count(*),
					  (SELECT count(*) FROM orders WHERE status = 'closed'))
		  FROM ev WHERE kind = 'closed')
UNION ALL
SELECT 4, 'the cancelled order has one cancelled event per channel and was not closed',
	   (SELECT count(*) FROM ev WHERE order_key = '3' AND kind = 'cancelled')
		 = (SELECT cardinality(channels) FROM chans)
	   AND NOT EXISTS (SELECT 1 FROM ev WHERE order_key = '3' AND kind = 'closed'),
	   (SELECT string_agg(kind, ',') FROM ev WHERE order_key = '3')
UNION ALL
SELECT 5, 'order 5 (extended by the shop) closed later than the others',
	   (SELECT min(created_at) FROM ev WHERE kind = 'closed' AND order_key = '5')
		 > (SELECT max(created_at) FROM ev WHERE kind = 'closed' AND order_key <> '5'),
	   (SELECT format('order 5 closed at %s, the others by %s',
					  (SELECT min(created_at) FROM ev WHERE kind = 'closed' AND order_key = '5')::time(1),
					  (SELECT max(created_at) FROM ev WHERE kind = 'closed' AND order_key <> '5')::time(1)))
UNION ALL
SELECT 6, 'closes happened on time (within 2 s of the deadline)',
	   coalesce((SELECT max(created_at - (payload ->> 'close_at')::timestamptz)
				   FROM ev WHERE kind = 'closed') < interval '2 seconds', false),
	   (SELECT format('latest close came %s s after its deadline',
					  round(extract(epoch FROM max(created_at - (payload ->> 'close_at')::timestamptz)), 3))
		  FROM ev WHERE kind = 'closed')
UNION ALL
SELECT 7, 'each order unpaid at its reminder time got exactly one reminder per channel per deadline (2, 3, 6 none)',
	   NOT EXISTS (SELECT 1 FROM rem GROUP BY order_key, channel, close_at HAVING count(*) <> 1)
	   AND NOT EXISTS (SELECT 1 FROM expected_rem x, chans, unnest(chans.channels) ch
					   WHERE (SELECT count(*) FROM rem
							   WHERE rem.order_key = x.id::text AND rem.channel = ch) <> x.deadlines)
	   AND NOT EXISTS (SELECT 1 FROM rem, chans
					   WHERE rem.channel <> ALL (chans.channels)
						  OR rem.order_key NOT IN (SELECT id::text FROM expected_rem)),
	   (SELECT 'reminders per order ' ||
			   string_agg(format('%s:%s', x.id, (SELECT count(*) FROM rem WHERE rem.order_key = x.id::text)),
						  ' ' ORDER BY x.id)
		  FROM expected_rem x)
UNION ALL
SELECT 8, 'reminders went out on time (5 s before the deadline, within 2 s of remind_at)',
	   coalesce((SELECT bool_and(close_at - remind_at = interval '5 seconds'
								 AND created_at >= remind_at
								 AND created_at - remind_at < interval '2 seconds'
								 AND created_at < close_at) FROM rem), false),
	   (SELECT format('%s reminders, latest came %s s after its remind_at', count(*),
					  round(extract(epoch FROM max(created_at - remind_at)), 3))
		  FROM rem)
UNION ALL
SELECT 9, 'order 4 (extended by its link) got two reminders, the second without a link, and closed at its new deadline',
	   coalesce(o4.deadlines = 2 AND o4.first_has_link AND o4.second_has_none
				AND o4.second_close = o4.first_close + interval '10 seconds'
				AND o4.ext_close = o4.second_close
				AND o4.closed_deadline = o4.second_close
				AND o4.closed_at >= o4.second_close
				AND o4.closed_at < o4.second_close + interval '2 seconds', false),
	   format('reminders for %s (with link) and %s (%s), closed %s',
			  o4.first_close::time(1), o4.second_close::time(1),
			  CASE WHEN o4.second_has_none THEN 'without' ELSE 'with' END || ' link',
			  o4.closed_at::time(1))
  FROM o4
UNION ALL
SELECT 10, 'the reused link was refused; order 4 was extended through its link once',
	   :'reuse_err' <> ''
	   AND (SELECT count(*) FROM ev, chans
			 WHERE kind = 'extended' AND order_key = '4' AND payload ->> 'via' = 'token')
		   = (SELECT cardinality(channels) FROM chans),
	   coalesce(nullif(:'reuse_err', ''), 'the second click was not refused')
UNION ALL
SELECT 11, 'order 8, paid between its reminder and its deadline, has a reminder but no closed event',
	   (SELECT status FROM orders WHERE id = 8) = 'paid'
	   AND EXISTS (SELECT 1 FROM rem WHERE order_key = '8')
	   AND (SELECT max(close_at) FROM rem WHERE order_key = '8') < now()
	   AND NOT EXISTS (SELECT 1 FROM ev WHERE order_key = '8' AND kind = 'closed'),
	   (SELECT format('events %s; deadline %s has passed',
					  coalesce(string_agg(kind, ',' ORDER BY id), 'none'),
					  (SELECT max(close_at) FROM rem WHERE order_key = '8')::time(1))
		  FROM ev WHERE order_key = '8')
UNION ALL
SELECT 12, 'orderexp-relay delivered every event once (one JSON line or one text message each) and exited 0',
	   :'relay_rc' = '0'
	   AND NOT EXISTS (SELECT 1 FROM ev WHERE delivered_at IS NULL)
	   AND (SELECT count(*) FROM ev WHERE channel <> 'sms') = :'relay_lines'::bigint
	   AND (SELECT count(*) FROM ev WHERE channel = 'sms') = :'sms_sent'::bigint
	   AND (SELECT max(attempts) FROM ev) = 1,
	   format('exit status %s, %s lines for %s e-mail events, %s text messages for %s sms events, %s undelivered',
			  :'relay_rc', :'relay_lines',
			  (SELECT count(*) FROM ev WHERE channel <> 'sms'), :'sms_sent',
			  (SELECT count(*) FROM ev WHERE channel = 'sms'),
			  (SELECT count(*) FROM ev WHERE delivered_at IS NULL))
UNION ALL
SELECT 13, 'ivan, who chose SMS only, got one reminder, by SMS, and no e-mail',
	   (SELECT count(*) FROM pev WHERE order_key = '1' AND kind = 'reminder' AND channel = 'sms'
		   AND delivered_at IS NOT NULL) = 1
	   AND NOT EXISTS (SELECT 1 FROM pev WHERE order_key = '1' AND kind = 'reminder' AND channel <> 'sms'),
	   (SELECT string_agg(kind || ':' || channel, ',' ORDER BY id) FROM pev WHERE order_key = '1')
UNION ALL
SELECT 14, 'judy''s e-mail reminder was refused for good (550) and one SMS reminder with the same link went instead, in her history',
	   (SELECT dead_at IS NOT NULL AND last_error LIKE '%550%' FROM pev
		 WHERE order_key = '2' AND kind = 'reminder' AND channel = 'mail')
	   AND (SELECT count(*) FROM pev WHERE order_key = '2' AND kind = 'reminder' AND channel = 'sms'
			   AND payload ? 'fallback_from' AND delivered_at IS NOT NULL) = 1
	   AND (SELECT count(*) FROM (SELECT DISTINCT payload ->> 'extension_token' FROM pev
									 WHERE order_key = '2' AND kind = 'reminder') t) = 1
	   AND (SELECT bool_and(payload ->> 'extension_token' IS NOT NULL) FROM pev
		     WHERE order_key = '2' AND kind = 'reminder')
	   AND EXISTS (SELECT 1 FROM orderexp.history('prefs', 2::bigint) h WHERE h.via = 'fallback'),
	   (SELECT string_agg(channel || ':' || CASE WHEN delivered_at IS NOT NULL THEN 'delivered'
											   WHEN dead_at IS NOT NULL THEN 'dead' ELSE 'waiting' END,
						  ',' ORDER BY id)
		  FROM pev WHERE order_key = '2' AND kind = 'reminder')
UNION ALL
SELECT 15, 'kate''s reminder, refused for now, was withheld once she had paid: never delivered',
	   (SELECT obsolete_at IS NOT NULL AND delivered_at IS NULL AND attempts = 1
		  FROM pev WHERE order_key = '3' AND kind = 'reminder')
	   AND (SELECT status FROM prefs WHERE id = 3) = 'paid',
	   (SELECT coalesce(last_error, '') FROM pev WHERE order_key = '3' AND kind = 'reminder')
UNION ALL
SELECT 16, 'explain_order tells ivan''s close in words',
	   orderexp.explain_order('prefs', 1::bigint) ILIKE '%closed%',
	   left(orderexp.explain_order('prefs', 1::bigint), 80) || '…'
) c ORDER BY n;
EOF
)
printf '%s\n' "$CHECKS" | indent
FAILED=$(grep -c '^FAIL' <<<"$CHECKS" || true)
PASSED=$(grep -c '^PASS' <<<"$CHECKS" || true)

ox_cluster_stop
echo
if ((FAILED == 0 && PASSED > 0)); then
	echo "demo OK: $PASSED checks passed"
else
	echo "demo FAILED: $FAILED of $((PASSED + FAILED)) checks failed"
	exit 1
fi
