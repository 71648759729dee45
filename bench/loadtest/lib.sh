# Shell helpers shared by loadtest/run.sh and loadtest/instructions.sh (sourced, not run).

# Prints a loopback TCP port nothing listens on; fails after 100 tries.
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free loopback port found" >&2
  return 1
}
