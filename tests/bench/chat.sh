#!/usr/bin/env bash
# Chat benchmark (issue: real-time chat). Starts release builds of the service and, through the public HTTP and
# WebSocket API only, measures:
#   1. idle sockets: IDLE students log in and each holds one socket open (answering heartbeats); the server's
#      resident memory (VmRSS) is read before and with all of them connected;
#   2. messages: PAIRS buyer–seller conversations with both sides connected, RATE text messages per second in
#      total (open loop, every socket sending to the other side of its conversation), send → receive latency
#      measured by the receiving client on the sender's clock (same process), acks and errors counted;
#   3. with BENCH_DATABASE_URL and BENCH_REDIS_URL: the same message load through TWO instances sharing
#      PostgreSQL and Redis, buyers connected to one and sellers to the other, so every message crosses Redis.
#
#   tests/bench/chat.sh                                            # SQLite, in-process bus (embedded default)
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1/test BENCH_REDIS_URL=redis://127.0.0.1:6379 tests/bench/chat.sh
#
# Settings: IDLE (10000), PAIRS (250), RATE (5000), DURATION (20), WARMUP (3), SKIP_IDLE=1, SKIP_SINGLE=1.
# The per-student send limit is raised for the run (CHAT_SEND_PER_MINUTE) because a few hundred benchmark
# students stand in for thousands of real ones; login's per-IP limit likewise (every client is 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/../.."

IDLE="${IDLE:-10000}"
PAIRS="${PAIRS:-250}"
RATE="${RATE:-5000}"
SECONDS_RUN="${DURATION:-20}"
WARMUP="${WARMUP:-3}"

cargo build --release -p campus-trade -p campus-trade-tests --bin campus-trade --bin loadgen
BIN="${CARGO_TARGET_DIR:-target}/release"

ulimit -n "$(ulimit -Hn)"   # 10,000 sockets need more descriptors than the usual soft limit
export LOG_LEVEL=warn LOGIN_RATE_PER_IP_PER_MINUTE=10000000 CHAT_SEND_PER_MINUTE=100000 CHAT_SEND_BURST=1000
WORK="$(mktemp -d)"
pids=()
stop_servers() { # pids...: SIGTERM, up to 10 s for the graceful shutdown, then SIGKILL
  local p
  for p in "$@"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
  for _ in $(seq 1 100); do
    local alive=0
    for p in "$@"; do [ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  for p in "$@"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
  return 0
}
cleanup() {
  set +e
  stop_servers "${pids[@]:-}"
  if [ -n "${BENCH_DATABASE_URL:-}" ]; then
    psql "$BENCH_DATABASE_URL" -qc "DROP SCHEMA IF EXISTS bench_chat_$$ CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

rss_mb() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

start() { # port [extra env...]; prints the pid
  local port="$1"; shift
  if curl -fs "http://127.0.0.1:${port}/readyz" >/dev/null 2>&1; then
    echo "port ${port} is already served by another process: stop it first" >&2
    exit 1
  fi
  env BIND="127.0.0.1:${port}" "$@" "$BIN/campus-trade" serve >>"$WORK/server-${port}.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:${port}/readyz" >/dev/null && break
    sleep 0.1
  done
  echo "$pid"
}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -z "${SKIP_SINGLE:-}" ]; then
  mkdir -p "$WORK/sqlite"
  pid=$(start 18082 DATA_DIR="$WORK/sqlite")
  pids+=("$pid")
  base="http://127.0.0.1:18082"
  if [ -z "${SKIP_IDLE:-}" ]; then
    echo "== idle sockets: ${IDLE} (SQLite, one instance); server RSS before: $(rss_mb "$pid") MB"
    "$BIN/loadgen" chat-idle --base "$base" --sockets "$IDLE" --hold 15 --ready-file "$WORK/idle-ready" &
    idle_pid=$!
    while [ ! -f "$WORK/idle-ready" ] && kill -0 "$idle_pid" 2>/dev/null; do sleep 0.5; done
    sleep 5
    echo "== server RSS with the sockets open: $(rss_mb "$pid") MB (loadgen client: $(rss_mb "$idle_pid") MB)"
    wait "$idle_pid"
    echo "== server RSS after they closed: $(rss_mb "$pid") MB"
  fi
  echo "== messages: ${PAIRS} conversations ($((PAIRS * 2)) sockets), ${RATE}/s for ${SECONDS_RUN}s, one instance, SQLite"
  "$BIN/loadgen" chat --base "$base" --pairs "$PAIRS" --rate "$RATE" --seconds "$SECONDS_RUN" --warmup "$WARMUP"
  echo "== server RSS: $(rss_mb "$pid") MB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  stop_servers "$pid"
fi

if [ -n "${BENCH_DATABASE_URL:-}" ] && [ -n "${BENCH_REDIS_URL:-}" ]; then
  shared=(DATA_DIR="$WORK/pg" DATABASE_URL="$BENCH_DATABASE_URL" DATABASE_SCHEMA="bench_chat_$$"
          REDIS_URL="$BENCH_REDIS_URL" REDIS_KEY_PREFIX="bench_chat_$$:")
  mkdir -p "$WORK/pg"
  a=$(start 18083 "${shared[@]}")
  b=$(start 18084 "${shared[@]}")
  pids+=("$a" "$b")
  echo "== messages: ${PAIRS} conversations, ${RATE}/s for ${SECONDS_RUN}s, TWO instances (PostgreSQL + Redis), buyers on one, sellers on the other"
  "$BIN/loadgen" chat --base "http://127.0.0.1:18083" --base2 "http://127.0.0.1:18084" \
    --pairs "$PAIRS" --rate "$RATE" --seconds "$SECONDS_RUN" --warmup "$WARMUP"
  echo "== RSS: $(rss_mb "$a") MB + $(rss_mb "$b") MB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
fi
