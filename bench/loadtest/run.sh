#!/usr/bin/env bash
# Load harness: GET /me with a valid session cookie, driven by wrk, on five servers side by side:
#
#   bare                          axum handler, no session (the ceiling)     bench/examples/load_bare.rs
#   sealed                        sealed-sessions serve, in-process list     server/
#   sealed+redis                  the same with --redis                      server/
#   tower-sessions+redis          axum + tower-sessions on Redis             bench/examples/load_tower_sessions.rs
#   express-session+connect-redis Node: express-session on connect-redis    bench/loadtest/express/
#
# Each server runs alone, pinned to one core (SERVER_CPU); wrk runs pinned to another (LOAD_CPU);
# Redis (a redis-server this script starts on a free loopback port, no persistence) shares the
# load generator's core (REDIS_CPU), standing in for "another machine". Every process started
# here is bounded by `timeout` and killed on exit.
#
# Prints a markdown table and writes it to target/load-report.md.
#
#   bench/loadtest/run.sh                                   # defaults below
#   DURATION=30s CONNECTIONS=128 ROUNDS=3 bench/loadtest/run.sh
#   TARGETS="bare sealed" bench/loadtest/run.sh
#
# Environment (defaults):
#   DURATION=10s      measured wrk run per target (wrk syntax: 10s, 1m)
#   WARMUP=2s         unmeasured wrk run before it
#   CONNECTIONS=64    wrk -c
#   THREADS=1         wrk -t
#   ROUNDS=1          repeat all targets this many times, interleaved; the table shows medians
#   TARGETS="bare sealed sealed+redis tower-sessions+redis express-session+connect-redis"
#   SERVER_CPU=0 LOAD_CPU=1 REDIS_CPU=1
#   SERVER_RUST_LOG   RUST_LOG for our server; unset = its default, info (audit events on), which
#                     is what a production deployment runs
#   SKIP_BUILD=1      use the release binaries already built
#   SEALED_BIN=PATH   run this sealed-sessions binary instead of the one built here (to compare
#                     two builds against the same ceiling)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-1}
TARGETS=${TARGETS:-"bare sealed sealed+redis tower-sessions+redis express-session+connect-redis"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
REDIS_CPU=${REDIS_CPU:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REPORT=$TARGET_DIR/load-report.md
WORK=$TARGET_DIR/load
# Exactly how this run was invoked, for the report.
COMMAND="DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS THREADS=$THREADS ROUNDS=$ROUNDS"
[ -n "${SERVER_RUST_LOG:-}" ] && COMMAND+=" SERVER_RUST_LOG=$SERVER_RUST_LOG"
[ -n "${SEALED_BIN:-}" ] && COMMAND+=" SEALED_BIN=$SEALED_BIN"
[ "$TARGETS" != "bare sealed sealed+redis tower-sessions+redis express-session+connect-redis" ] &&
  COMMAND+=" TARGETS=\"$TARGETS\""
COMMAND+=" bench/loadtest/run.sh"

say() { printf '%s\n' "$*" >&2; }
die() { say "load: $*"; exit 1; }

# "10s", "2m", "1h", "500ms" -> whole seconds (rounded up); wrk accepts the same forms.
seconds() {
  local v=$1
  case $v in
    *ms) echo $(((${v%ms} + 999) / 1000)) ;;
    *s) echo "${v%s}" ;;
    *m) echo $((${v%m} * 60)) ;;
    *h) echo $((${v%h} * 3600)) ;;
    *) echo "$v" ;;
  esac
}
DUR_S=$(seconds "$DURATION")
WARM_S=$(seconds "$WARMUP")
[[ $DUR_S =~ ^[0-9]+$ && $DUR_S -gt 0 ]] || die "DURATION=$DURATION is not a duration"
[[ $WARM_S =~ ^[0-9]+$ ]] || die "WARMUP=$WARMUP is not a duration"
# Upper bound on one server's life: warm-up, measurement, start-up and slack.
SERVER_LIFETIME=$((WARM_S + DUR_S + 120))

# --- tools ---------------------------------------------------------------------------------
command -v taskset >/dev/null || die "taskset is missing (util-linux)"
command -v curl >/dev/null || die "curl is missing"
command -v timeout >/dev/null || die "timeout is missing (coreutils)"
if ! command -v wrk >/dev/null; then
  say "installing wrk (Debian package)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } >&2 ||
    die "wrk is missing and could not be installed: apt-get install -y wrk"
fi
if ! command -v redis-server >/dev/null; then
  say "installing redis-server (Debian package)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } >&2 ||
    die "redis-server is missing and could not be installed"
fi
[ "$(nproc)" -ge 2 ] || say "warning: $(nproc) CPU(s); server and load generator share a core"

# --- processes: every one is recorded here and stopped on exit --------------------------------
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts "$@" in the background on CPU $1, bounded by $2 seconds, output to $3; sets BG_PID to
# the `timeout` process (which forwards our TERM to its child).
start_bg() {
  local cpu=$1 lifetime=$2 log=$3
  shift 3
  timeout -k 5 "$lifetime" taskset -c "$cpu" "$@" >"$log" 2>&1 &
  BG_PID=$!
  PIDS+=("$BG_PID")
}

stop_bg() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# The program `timeout` runs (taskset execs it, so it is timeout's only child).
child_of() {
  local c
  for _ in $(seq 50); do
    c=$(cat "/proc/$1/task/$1/children" 2>/dev/null || true)
    [ -n "$c" ] && { echo "${c%% *}"; return; }
    sleep 0.02
  done
  echo ""
}

CLK_TCK=$(getconf CLK_TCK)
# user and system CPU ticks of a process and all its threads so far, as "user sys".
cpu_split() {
  if [ -z "$1" ] || [ ! -r "/proc/$1/stat" ]; then echo "0 0"; return; fi
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'
}
# user+system CPU ticks of a process and all its threads so far.
cpu_ticks() {
  if [ -z "$1" ] || [ ! -r "/proc/$1/stat" ]; then echo 0; return; fi
  # Fields after the ")" that closes the command name: utime is the 12th, stime the 13th.
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# free_port (shared with the other load script)
. "$ROOT/bench/loadtest/lib.sh"

# Waits until $2 contains "listening on http://ADDR" (or, for a port file, ADDR) and prints ADDR.
wait_addr() {
  local pid=$1 file=$2 what=$3 addr=""
  for _ in $(seq 600); do
    if [ -s "$file" ]; then
      addr=$(sed -n 's|.*listening on http://\([0-9.]*:[0-9]*\).*|\1|p; s|^\([0-9.]*:[0-9]*\)$|\1|p' "$file" | head -1)
      [ -n "$addr" ] && { echo "$addr"; return; }
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  say "--- $what log:"; tail -20 "${LOG:-/dev/null}" >&2 || true
  die "$what did not start"
}

# Sets CHILD_CPU to the CPU seconds (user + system) of this shell's children reaped so far.
# `times` must run in this shell, not in a $(...) subshell, hence the file.
children_cpu() {
  times >"$WORK/times"
  CHILD_CPU=$(tail -1 "$WORK/times" |
    awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] } print t }')
}

# Runs wrk on LOAD_CPU for $2 against $3, output to $1, in the background so that a signal
# stops the run at once (bash runs traps only between foreground commands). Sets WRK_CPU to
# wrk's CPU seconds: near the wall time means the load generator, not the server, is the limit.
run_wrk() {
  local out=$1 duration=$2 url=$3 c0 pid
  children_cpu
  c0=$CHILD_CPU
  timeout -k 5 $(($(seconds "$duration") + 30)) taskset -c "$LOAD_CPU" \
    wrk "-t$THREADS" "-c$CONNECTIONS" "-d$duration" --latency -s "$ROOT/bench/loadtest/report.lua" \
    -H "Cookie: $COOKIE" "$url" >"$out" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait "$pid" || die "wrk failed: $(tail -5 "$out")"
  children_cpu
  WRK_CPU=$(awk -v a="$c0" -v b="$CHILD_CPU" 'BEGIN { print b - a }')
}

# POSTs a JSON login body to $1/login and prints the `session=...` pair from its Set-Cookie.
login_cookie() {
  local url=$1 body=$2 name=$3 code cookie
  code=$(curl -sS -m 10 -o "$WORK/$name.login.body" -D "$WORK/$name.login.headers" \
    -w '%{http_code}' -H 'content-type: application/json' -d "$body" "$url/login")
  [ "$code" = 200 ] || die "$name: POST /login answered $code: $(cat "$WORK/$name.login.body")"
  cookie=$(tr -d '\r' <"$WORK/$name.login.headers" |
    awk 'tolower($1) == "set-cookie:" { split($2, a, ";"); print a[1] }' | grep '^session=' | tail -1)
  [ -n "$cookie" ] || die "$name: no session cookie in the login response"
  code=$(curl -sS -m 10 -o "$WORK/$name.me.body" -w '%{http_code}' -H "Cookie: $cookie" "$url/me")
  [ "$code" = 200 ] || die "$name: GET /me with the new cookie answered $code: $(cat "$WORK/$name.me.body")"
  echo "$cookie"
}

# --- build ----------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-}" != 1 ]; then
  say "building release binaries"
  cargo build --release -p sealed-sessions-server --bin sealed-sessions && cargo build --release -p sealed-sessions-bench --example load_bare --example load_tower_sessions >&2
fi
SEALED=${SEALED_BIN:-$TARGET_DIR/release/sealed-sessions}
BARE=$TARGET_DIR/release/examples/load_bare
TOWER=$TARGET_DIR/release/examples/load_tower_sessions
for b in "$SEALED" "$BARE" "$TOWER"; do [ -x "$b" ] || die "$b is missing (unset SKIP_BUILD)"; done

rm -rf "$WORK"
mkdir -p "$WORK"
RESULTS=$WORK/results.tsv
: >"$RESULTS"
# Our server reads flags from SEALED_SESSIONS_*; none from the caller's shell may leak in.
for v in $(compgen -e | grep '^SEALED_SESSIONS_' || true); do unset "$v"; done

TARGET_LIST=()
for t in $TARGETS; do
  case $t in
    bare | sealed | sealed+redis | tower-sessions+redis) TARGET_LIST+=("$t") ;;
    express-session+connect-redis)
      if ! command -v node >/dev/null; then
        say "SKIPPED express-session+connect-redis: node is not installed"
        continue
      fi
      if [ ! -d bench/loadtest/express/node_modules ]; then
        say "installing bench/loadtest/express dependencies (npm ci)"
        (cd bench/loadtest/express && npm ci --no-audit --no-fund >&2)
      fi
      TARGET_LIST+=("$t")
      ;;
    *) die "unknown target $t" ;;
  esac
done
[ ${#TARGET_LIST[@]} -gt 0 ] || die "no targets"

# --- Redis ----------------------------------------------------------------------------------
REDIS_PID=""
REDIS_URL=""
if [[ " ${TARGET_LIST[*]} " == *redis* ]]; then
  REDIS_PORT=$(free_port)
  LOG=$WORK/redis.log
  start_bg "$REDIS_CPU" $(((WARM_S + DUR_S + 180) * ${#TARGET_LIST[@]} * ROUNDS + 300)) "$LOG" \
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --protected-mode yes
  REDIS_TIMEOUT_PID=$BG_PID
  for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
    kill -0 "$REDIS_TIMEOUT_PID" 2>/dev/null || die "redis-server did not start: $(tail -5 "$LOG")"
    sleep 0.1
  done
  redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG || die "redis-server does not answer"
  REDIS_PID=$(child_of "$REDIS_TIMEOUT_PID")
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
  say "redis-server on 127.0.0.1:$REDIS_PORT (CPU $REDIS_CPU)"
fi

# --- one target -----------------------------------------------------------------------------
WRK_EXAMPLE=""
run_target() {
  local target=$1 round=$2 name=${1//+/_} addr cookie pid url
  LOG=$WORK/$name.$round.log
  local extra=()
  # wrk keeps sending the login cookie; a browser would store each renewal. Past renew-after
  # (60 s) every request would renew, which no real client causes, so a long run moves it out.
  if [ $((WARM_S + DUR_S)) -ge 50 ]; then extra=(--renew-after "$((WARM_S + DUR_S + 60))s"); fi
  case $target in
    bare)
      start_bg "$SERVER_CPU" "$SERVER_LIFETIME" "$LOG" "$BARE" 127.0.0.1:0
      addr=$(wait_addr "$BG_PID" "$LOG" "$target")
      ;;
    sealed | sealed+redis)
      mkdir -p "$WORK/keys" && chmod 700 "$WORK/keys"
      rm -f "$WORK/sealed.port"
      [ "$target" = sealed+redis ] && extra+=(--redis "$REDIS_URL" --redis-prefix "load$round")
      start_bg "$SERVER_CPU" "$SERVER_LIFETIME" "$LOG" \
        env ${SERVER_RUST_LOG:+RUST_LOG=$SERVER_RUST_LOG} "$SEALED" serve --insecure-dev-cookies \
        --listen 127.0.0.1:0 --port-file "$WORK/sealed.port" --keys "$WORK/keys" "${extra[@]}"
      addr=$(wait_addr "$BG_PID" "$WORK/sealed.port" "$target")
      ;;
    tower-sessions+redis)
      start_bg "$SERVER_CPU" "$SERVER_LIFETIME" "$LOG" "$TOWER" 127.0.0.1:0 "$REDIS_URL"
      addr=$(wait_addr "$BG_PID" "$LOG" "$target")
      ;;
    express-session+connect-redis)
      start_bg "$SERVER_CPU" "$SERVER_LIFETIME" "$LOG" \
        env PORT=0 REDIS_URL="$REDIS_URL" NODE_ENV=production node bench/loadtest/express/server.js
      addr=$(wait_addr "$BG_PID" "$LOG" "$target")
      ;;
  esac
  url=http://$addr
  pid=$(child_of "$BG_PID")
  case $target in
    # A cookie as long as the session servers' (135 characters for the demo user's token), so
    # every target parses and receives the same request bytes.
    bare) cookie="session=$(printf 'x%.0s' $(seq 135))" ;;
    sealed*) cookie=$(login_cookie "$url" '{"username":"alice","password":"alice-password"}' "$name") ;;
    *) cookie=$(login_cookie "$url" '{"username":"alice"}' "$name") ;;
  esac
  COOKIE=$cookie
  if [ "$WARM_S" -gt 0 ]; then run_wrk "$WORK/$name.$round.warmup" "$WARMUP" "$url/me"; fi
  local t0 t1 s0 s1 r0 r1 u0 k0 u1 k1
  s0=$(cpu_ticks "$pid"); r0=$(cpu_ticks "$REDIS_PID"); t0=$(date +%s.%N)
  read -r u0 k0 < <(cpu_split "$pid")
  run_wrk "$WORK/$name.$round.wrk" "$DURATION" "$url/me"
  t1=$(date +%s.%N); s1=$(cpu_ticks "$pid"); r1=$(cpu_ticks "$REDIS_PID")
  read -r u1 k1 < <(cpu_split "$pid")
  local line
  line=$(grep '^LOAD_RESULT ' "$WORK/$name.$round.wrk") || die "$target: no result line from wrk"
  # One TSV row: target, round, then the key=value fields, then CPU shares of the wall time.
  awk -v t="$target" -v r="$round" -v line="$line" -v s="$((s1 - s0))" -v rd="$((r1 - r0))" \
    -v hz="$CLK_TCK" -v t0="$t0" -v t1="$t1" -v redis="${REDIS_PID:+1}" \
    -v wrk_cpu="$WRK_CPU" -v ut="$((u1 - u0))" -v kt="$((k1 - k0))" 'BEGIN {
      n = split(line, f, " "); out = t "\t" r
      for (i = 2; i <= n; i++) { split(f[i], kv, "="); out = out "\t" kv[2] }
      wall = t1 - t0
      rc = (redis != "" && t ~ /redis/) ? sprintf("%.0f", 100 * rd / hz / wall) : "-"
      # Server user and kernel CPU per request, in microseconds (f[2] is requests=N).
      split(f[2], req, "="); nreq = (req[2] > 0) ? req[2] : 1
      printf "%s\t%.0f\t%s\t%.0f\t%.2f\t%.2f\n", out, 100 * s / hz / wall, rc, 100 * wrk_cpu / wall,
        1e6 * ut / hz / nreq, 1e6 * kt / hz / nreq
    }' >>"$RESULTS"
  [ -z "$WRK_EXAMPLE" ] && [ "$target" != bare ] &&
    WRK_EXAMPLE="taskset -c $LOAD_CPU wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency -s bench/loadtest/report.lua -H 'Cookie: session=…' http://$addr/me"
  stop_bg "$BG_PID"
  say "$(printf '%-30s round %s: %s' "$target" "$round" "$(tail -1 "$RESULTS" | cut -f5)") req/s"
}

say "load: ${TARGET_LIST[*]}; $ROUNDS round(s) of wrk -t$THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP)"
for round in $(seq "$ROUNDS"); do
  for t in "${TARGET_LIST[@]}"; do run_target "$t" "$round"; done
done

# --- report ---------------------------------------------------------------------------------
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
MACHINE="$(nproc) CPUs ($CPU_MODEL), Linux $(uname -r); server on CPU $SERVER_CPU, wrk on CPU $LOAD_CPU, redis-server on CPU $REDIS_CPU"
ORDER="${TARGET_LIST[*]}"
{
  echo "| target | req/s | p50 | p99 | req/s vs bare | p99 vs bare | server CPU | req/CPU-s | req/CPU-s vs bare | server user µs/req | server kernel µs/req | redis CPU | wrk CPU | non-2xx + errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  # Columns of results.tsv: 1 target, 2 round, 3 requests, 4 duration_us, 5 rps, 6 p50, 7 p90,
  # 8 p99, 9 max, 10-14 errors (connect read write status timeout), 15 server CPU %,
  # 16 redis CPU %, 17 wrk CPU %, 18 server user µs per request, 19 server kernel µs per request.
  awk -F'\t' -v order="$ORDER" '
    function median(list,   a, n, i, j, t) {
      n = split(list, a, " ")
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function ms(us) { return (us < 1000) ? sprintf("%.0f µs", us) : sprintf("%.2f ms", us / 1000) }
    {
      rps[$1] = rps[$1] " " $5; p50[$1] = p50[$1] " " $6; p99[$1] = p99[$1] " " $8
      errs[$1] += $10 + $11 + $12 + $13 + $14; cpu[$1] = cpu[$1] " " $15
      # Requests per second of server CPU: the per-request cost, whatever share of its core
      # the scheduler left the server on a busy machine.
      if ($15 > 0) eff[$1] = eff[$1] " " ($5 / ($15 / 100))
      if ($16 != "-") rcpu[$1] = rcpu[$1] " " $16
      wcpu[$1] = wcpu[$1] " " $17
      usr[$1] = usr[$1] " " $18; sys[$1] = sys[$1] " " $19
    }
    END {
      n = split(order, ts, " ")
      if ("bare" in rps) { brps = median(rps["bare"]); bp99 = median(p99["bare"]); beff = median(eff["bare"]) }
      for (i = 1; i <= n; i++) {
        t = ts[i]; r = median(rps[t]); q = median(p99[t])
        vr = (brps > 0) ? sprintf("%.2f", r / brps) : "–"
        vq = (bp99 > 0) ? sprintf("%.2f×", q / bp99) : "–"
        rc = (t in rcpu) ? sprintf("%.0f%%", median(rcpu[t])) : "–"
        e = (t in eff) ? median(eff[t]) : 0
        ve = (beff > 0 && e > 0) ? sprintf("%.2f", e / beff) : "–"
        printf "| %s | %.0f | %s | %s | %s | %s | %.0f%% | %.0f | %s | %.2f | %.2f | %s | %.0f%% | %d |\n", t, r, ms(median(p50[t])), ms(q), vr, vq, median(cpu[t]), e, ve, median(usr[t]), median(sys[t]), rc, median(wcpu[t]), errs[t]
        # Machine-readable medians for the ratio lines below.
        printf "%s %f %f %f %d\n", t, r, q, e, errs[t] > "/dev/stderr"
      }
    }' "$RESULTS" 2>"$WORK/medians"
} >"$WORK/table.md"

med() { awk -v t="$1" -v c="$2" '$1 == t { print $c }' "$WORK/medians"; }
ratio_lines() {
  local t r q e br bq be
  br=$(med bare 2)
  bq=$(med bare 3)
  be=$(med bare 4)
  for t in sealed sealed+redis; do
    r=$(med "$t" 2)
    q=$(med "$t" 3)
    e=$(med "$t" 4)
    [ -n "$r" ] && [ -n "$br" ] && awk -v t="$t" -v r="$r" -v q="$q" -v e="$e" -v br="$br" -v bq="$bq" -v be="$be" 'BEGIN {
      printf "- **%s vs bare**: %.0f%% of the ceiling'"'"'s req/s (goal ≥ 90%%: %s), p99 %.2f× the ceiling'"'"'s (goal ≤ 1.2×: %s); per server CPU-second %.0f%% of the ceiling'"'"'s requests\n",
        t, 100 * r / br, (r / br >= 0.9) ? "met" : "**missed**", q / bq, (q / bq <= 1.2) ? "met" : "**missed**", (be > 0) ? 100 * e / be : 0 }'
  done
  awk '$5 > 0 { printf "- **warning**: %s had %d non-2xx responses or socket errors; its numbers do not measure a session read\n", $1, $5 }' "$WORK/medians"
  for peer in tower-sessions+redis express-session+connect-redis; do
    for t in sealed+redis sealed; do
      r=$(med "$t" 2)
      q=$(med "$t" 3)
      e=$(med "$t" 4)
      local pr pq pe
      pr=$(med "$peer" 2)
      pq=$(med "$peer" 3)
      pe=$(med "$peer" 4)
      [ -n "$r" ] && [ -n "$pr" ] && awk -v t="$t" -v p="$peer" -v r="$r" -v q="$q" -v e="$e" \
        -v pr="$pr" -v pq="$pq" -v pe="$pe" 'BEGIN {
        printf "- **%s vs %s**: %.2f× the req/s, %.2f× the p99, %.2f× the requests per server CPU-second\n",
          t, p, r / pr, q / pq, (pe > 0) ? e / pe : 0 }'
    done
  done
  return 0
}

{
  echo "### Load test: GET /me with a valid session cookie"
  echo
  echo "- machine: $MACHINE"
  echo "- command: \`$COMMAND\`"
  echo "- load: \`${WRK_EXAMPLE:-wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency}\` after a $WARMUP warm-up, per target; medians of $ROUNDS round(s)"
  echo "- our server: \`sealed-sessions serve --insecure-dev-cookies [--redis URL]\`, RUST_LOG=${SERVER_RUST_LOG:-unset (info, the default)}"
  echo
  cat "$WORK/table.md"
  echo
  ratio_lines
  echo
  echo "Ratios compare targets within this run only; the machine is shared, so absolute numbers move between runs."
} >"$REPORT"

cat "$REPORT"
say ""
say "written to $REPORT (wrk outputs and server logs in $WORK)"
