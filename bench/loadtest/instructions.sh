#!/usr/bin/env bash
# Instructions per GET /me, counted by valgrind's callgrind in the server process: the load
# harness's cost comparison without the noise of a shared machine (instruction counts do not
# depend on what else runs; kernel time is not included).
#
#   loadtest/instructions.sh                 # the ceiling and our server, 2,000 requests each
#   REQUESTS=5000 loadtest/instructions.sh
#   SEALED_BIN=PATH loadtest/instructions.sh # another build of our server (to compare two)
#
# Each server starts under callgrind with instrumentation off, gets 200 warm-up requests, then
# REQUESTS requests on 4 keep-alive connections with instrumentation on; the total divided by
# REQUESTS is printed. Both get the same request bytes (the ceiling a dummy cookie as long as a
# real one). Needs valgrind, python3 and curl; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
REQUESTS=${REQUESTS:-2000}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$TARGET_DIR/instructions
mkdir -p "$WORK"

command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is missing" >&2; exit 1; }

if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -p sealed-sessions-server --bin sealed-sessions && cargo build --release -p sealed-sessions-bench --example load_bare >&2
fi
SEALED=${SEALED_BIN:-$TARGET_DIR/release/sealed-sessions}
BARE=$TARGET_DIR/release/examples/load_bare

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Sends N GET /me with the given Cookie over 4 keep-alive connections; fails on any non-200.
cat >"$WORK/drive.py" <<'EOF'
import http.client, sys
host, port, n, cookie = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
conns = [http.client.HTTPConnection(host, port, timeout=60) for _ in range(4)]
for i in range(n):
    c = conns[i % 4]
    c.request("GET", "/me", headers={"Cookie": cookie})
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"GET /me answered {r.status}")
EOF

# free_port (shared with the other load script)
. "$ROOT/bench/loadtest/lib.sh"

# measure NAME -- command (which must listen on $PORT)
measure() {
  local name=$1 out=$WORK/$1.callgrind cookie pid tot
  shift 2
  rm -f "$out"*
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$@" \
    >"$WORK/$name.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 300); do
    curl -s -o /dev/null -m 2 "http://127.0.0.1:$PORT/me" && break
    kill -0 "$pid" 2>/dev/null || { tail "$WORK/$name.log" >&2; exit 1; }
    sleep 0.2
  done
  if [ "$name" = ceiling ]; then
    cookie="session=$(printf 'x%.0s' $(seq 135))"
  else
    cookie=$(curl -s -m 30 -D - -o /dev/null -H 'content-type: application/json' \
      -d '{"username":"alice","password":"alice-password"}' "http://127.0.0.1:$PORT/login" |
      tr -d '\r' | awk 'tolower($1) == "set-cookie:" { split($2, a, ";"); print a[1] }' |
      grep '^session=' | tail -1)
    [ -n "$cookie" ] || { echo "$name: login gave no cookie" >&2; exit 1; }
  fi
  python3 "$WORK/drive.py" 127.0.0.1 "$PORT" 200 "$cookie"
  callgrind_control -i on "$pid" >/dev/null 2>&1
  python3 "$WORK/drive.py" 127.0.0.1 "$PORT" "$REQUESTS" "$cookie"
  callgrind_control -i off "$pid" >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  tot=$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  printf '| %s | %d |\n' "$name" $((tot / REQUESTS))
}

echo "| server | instructions per GET /me ($REQUESTS requests) |"
echo "|---|---:|"
PORT=$(free_port)
measure ceiling -- "$BARE" "127.0.0.1:$PORT"
PORT=$(free_port)
measure sealed -- "$SEALED" serve --insecure-dev-cookies --listen "127.0.0.1:$PORT" \
  --keys "$WORK/keys"
