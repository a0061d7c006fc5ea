#!/usr/bin/env bash
# Search benchmark: seeds N listings (Chinese titles from word lists) with their search index (timed separately,
# with its on-disk size), starts a release build of the service, and drives the 200 benchmark queries
# (`loadgen search-urls`: words, brands, condition words, phrases, exclusions, sorts and filters; first pages,
# anonymous, each with the demo school) and then suggestion prefixes (`loadgen suggest-urls`) at 32 concurrent
# connections. Results go to stdout; docs/performance.md records them.
#
#   tests/bench/search.sh                                   # SQLite (embedded default), 1,000,000 listings
#   LISTINGS=100000 BENCH_DATABASE_URL=postgres://postgres@127.0.0.1/test tests/bench/search.sh   # PostgreSQL
#
# Settings: LISTINGS (1000000), CONCURRENCY (32), DURATION in seconds (20), WARMUP (5), PORT (18081),
# KEEP_DATA=1 keeps the seeded SQLite folder (printed) for a second run with DATA_DIR=<folder> SKIP_SEED=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

LISTINGS="${LISTINGS:-1000000}"
CONCURRENCY="${CONCURRENCY:-32}"
SECONDS_RUN="${DURATION:-20}"
WARMUP="${WARMUP:-5}"
PORT="${PORT:-18081}"

cargo build --release -p campus-trade -p campus-trade-tests --bin campus-trade --bin loadgen
BIN="${CARGO_TARGET_DIR:-target}/release"

if [ -z "${DATA_DIR:-}" ]; then DATA_DIR="$(mktemp -d)"; fi
export DATA_DIR BIND="127.0.0.1:${PORT}" LOG_LEVEL=warn
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  SCHEMA="${BENCH_SCHEMA:-bench_search_$$}"
  export DATABASE_URL="$BENCH_DATABASE_URL" DATABASE_SCHEMA="$SCHEMA"
  backend="postgresql"
else
  backend="sqlite"
fi
WORK="$(mktemp -d)"
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  if [ -z "${KEEP_DATA:-}" ]; then
    if [ -n "${BENCH_DATABASE_URL:-}" ]; then
      psql "$BENCH_DATABASE_URL" -qc "DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE" >/dev/null 2>&1 || true
    fi
    rm -rf "$DATA_DIR"
  else
    echo "== kept data: DATA_DIR=${DATA_DIR} ${SCHEMA:+DATABASE_SCHEMA=$SCHEMA}"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), backend ${backend}, load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -z "${SKIP_SEED:-}" ]; then
  echo "== seeding ${LISTINGS} listings and their search index on ${backend}"
  "$BIN/loadgen" seed-listings --count "$LISTINGS"
fi
if [ "$backend" = sqlite ]; then
  echo "== database file: $(du -h "$DATA_DIR/campus_trade.db" | cut -f1)"
fi

"$BIN/campus-trade" serve &
server_pid=$!
for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:${PORT}/readyz" >/dev/null && break
  sleep 0.1
done

base="http://127.0.0.1:${PORT}"
"$BIN/loadgen" search-urls --base "$base" > "$WORK/search.txt"
"$BIN/loadgen" suggest-urls --base "$base" > "$WORK/suggest.txt"
echo "== $(wc -l < "$WORK/search.txt") search URLs, $(wc -l < "$WORK/suggest.txt") suggestion URLs; for example:"
head -3 "$WORK/search.txt"

# One pass over every query first: the page cache warms up and the suggestion vocabulary is built.
while read -r url; do curl -fs -o /dev/null "$url" || echo "FAILED: $url"; done < "$WORK/search.txt"
while read -r url; do curl -fs -o /dev/null "$url" || echo "FAILED: $url"; done < "$WORK/suggest.txt"
echo "== in-process costs (no HTTP)"
"$BIN/loadgen" search-micro
# Time each query alone (one connection, nothing else running): which queries are expensive.
# With each query's `total` (matches, counted up to SEARCH_RANK_WINDOW): cost grows with the matches, not the corpus.
echo "== single-request latency per query: ms, matches, query (slowest 12, then the fastest 5)"
while read -r url; do
  t=$(curl -fs -o "$WORK/one.json" -w '%{time_total}' "$url")
  total=$(grep -o '"total":[0-9]*' "$WORK/one.json" | cut -d: -f2)
  q=$(python3 -c 'import sys, urllib.parse as u; print(u.unquote(sys.argv[1].split("?", 1)[1]))' "$url")
  awk -v t="$t" -v n="${total:-?}" -v q="$q" 'BEGIN { printf "%d %s %s\n", t * 1000, n, q }'
done < "$WORK/search.txt" | sort -rn > "$WORK/single.txt"
head -12 "$WORK/single.txt"; echo "…"; tail -5 "$WORK/single.txt"

# wrk (Debian package `wrk`) when installed: a C client that leaves more of the 2 cores to the server. It cycles
# through the URL file from a random start in each thread. Otherwise the in-repo Rust client.
load() { # name url-file
  local name="$1" file="$2"
  echo "== ${name}: ${CONCURRENCY} connections, ${SECONDS_RUN}s after ${WARMUP}s warm-up"
  if command -v wrk >/dev/null; then
    sed "s#^${base}##" "$file" > "$WORK/paths.txt"
    cat > "$WORK/cycle.lua" <<LUA
local paths = {}
local i = 0
for line in io.lines("$WORK/paths.txt") do paths[#paths + 1] = line end
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
LUA
    wrk -t2 -c"$CONCURRENCY" -d"${WARMUP}s" -s "$WORK/cycle.lua" "$base" >/dev/null
    wrk -t2 -c"$CONCURRENCY" -d"${SECONDS_RUN}s" --latency -s "$WORK/cycle.lua" "$base" | grep -E "Requests/sec|Latency|  50%|  90%|  99%|Non-2xx|Socket errors"
  else
    "$BIN/loadgen" http --url-file "$file" --concurrency "$CONCURRENCY" --seconds "$SECONDS_RUN" --warmup "$WARMUP"
  fi
}

load "search, 200 queries" "$WORK/search.txt"
# The same load split by kind: relevance-ranked words and phrases, relevance with a filter, and the time/price
# sorts (which page through every match instead of ranking a window of them).
head -130 "$WORK/search.txt" > "$WORK/plain.txt"
tail -n +131 "$WORK/search.txt" | grep -v 'sort=' > "$WORK/filtered.txt" || true
grep 'sort=' "$WORK/search.txt" > "$WORK/sorted.txt" || true
load "search, $(wc -l < "$WORK/plain.txt") relevance-ranked queries" "$WORK/plain.txt"
load "search, $(wc -l < "$WORK/filtered.txt") relevance-ranked queries with a filter" "$WORK/filtered.txt"
load "search, $(wc -l < "$WORK/sorted.txt") queries sorted by time or price" "$WORK/sorted.txt"
load "suggest, $(wc -l < "$WORK/suggest.txt") prefixes" "$WORK/suggest.txt"
