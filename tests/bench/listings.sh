#!/usr/bin/env bash
# Listings benchmark: seeds N listings, starts a release build of the service, and measures the newest-feed page
# and the detail page at 64 concurrent connections. Results go to stdout; docs/performance.md records them.
#
#   tests/bench/listings.sh                      # SQLite (embedded default), 100,000 listings
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1/test tests/bench/listings.sh   # PostgreSQL (own schema)
#
# Settings: LISTINGS (100000), CONCURRENCY (64), DURATION in seconds (20), WARMUP (3), PORT (18080).
set -euo pipefail
cd "$(dirname "$0")/../.."

LISTINGS="${LISTINGS:-100000}"
CONCURRENCY="${CONCURRENCY:-64}"
SECONDS_RUN="${DURATION:-20}"
WARMUP="${WARMUP:-3}"
PORT="${PORT:-18080}"

cargo build --release -p campus-trade -p campus-trade-tests --bin campus-trade --bin loadgen
BIN="${CARGO_TARGET_DIR:-target}/release"

DATA_DIR="$(mktemp -d)"
export DATA_DIR BIND="127.0.0.1:${PORT}" LOG_LEVEL=warn
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  export DATABASE_URL="$BENCH_DATABASE_URL" DATABASE_SCHEMA="bench_$$"
  backend="postgresql"
else
  backend="sqlite"
fi
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  if [ -n "${BENCH_DATABASE_URL:-}" ]; then
    psql "$BENCH_DATABASE_URL" -qc "DROP SCHEMA IF EXISTS bench_$$ CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$DATA_DIR"
}
trap cleanup EXIT

echo "== seeding ${LISTINGS} listings on ${backend}"
"$BIN/loadgen" seed-listings --count "$LISTINGS"

"$BIN/campus-trade" serve &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:${PORT}/readyz" >/dev/null && break
  sleep 0.1
done

base="http://127.0.0.1:${PORT}/api/v1"
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), backend ${backend}"

# wrk (Debian package `wrk`) when installed: a C client that leaves more of the 2 cores to the server. Otherwise
# the in-repo Rust client, which competes harder for the same cores (its figures are lower).
load() { # name url [id-max]
  local name="$1" url="$2" idmax="${3:-}"
  echo "== ${name}: ${CONCURRENCY} connections, ${SECONDS_RUN}s after ${WARMUP}s warm-up"
  if command -v wrk >/dev/null; then
    local script; script="$(mktemp --suffix=.lua)"
    if [ -n "$idmax" ]; then
      printf 'request = function()\n  return wrk.format("GET", (string.gsub("%s", "{id}", tostring(math.random(1, %s)))))\nend\n' "${url#http://127.0.0.1:${PORT}}" "$idmax" > "$script"
    else
      printf '' > "$script"
    fi
    wrk -t2 -c"$CONCURRENCY" -d"${WARMUP}s" -s "$script" "$url" >/dev/null
    wrk -t2 -c"$CONCURRENCY" -d"${SECONDS_RUN}s" --latency -s "$script" "$url" | grep -E "Requests/sec|Latency|  50%|  90%|  99%|Non-2xx|Socket errors"
    rm -f "$script"
  else
    "$BIN/loadgen" http --url "$url" ${idmax:+--id-max "$idmax"} --concurrency "$CONCURRENCY" --seconds "$SECONDS_RUN" --warmup "$WARMUP"
  fi
}

load "newest feed, 20 cards" "${base}/listings?school_id=1&limit=20"
load "detail page, random listing" "${base}/listings/{id}" "$LISTINGS"
