#!/usr/bin/env bash
# Payment-notification benchmark: seeds N prepaid WeChat Pay orders, starts a release build of the service
# in-process (sandbox mode), has the sandbox sign one genuine TRANSACTION.SUCCESS per order beforehand, then posts
# them to /api/v1/payments/wechat/notify and reports notifications processed per second (signature verification
# + decryption + the pending_payment → paid transaction). Results go to stdout; docs/performance.md records them.
#
#   tests/bench/payments.sh                      # SQLite (embedded default), 3000 orders, 32 connections
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1/test tests/bench/payments.sh   # PostgreSQL (own schema)
#
# Settings: ORDERS (3000), CONCURRENCY (32), PROFILE (release; `dev` skips the long release build).
set -euo pipefail
cd "$(dirname "$0")/../.."

ORDERS="${ORDERS:-3000}"
CONCURRENCY="${CONCURRENCY:-32}"
PROFILE="${PROFILE:-release}"

if [ "$PROFILE" = "release" ]; then
  cargo build --release -p campus-trade-tests --bin loadgen
  BIN="${CARGO_TARGET_DIR:-target}/release"
else
  cargo build -p campus-trade-tests --bin loadgen
  BIN="${CARGO_TARGET_DIR:-target}/debug"
fi

DATA_DIR="$(mktemp -d)"
export DATA_DIR BIND="127.0.0.1:0" LOG_LEVEL=warn
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  export DATABASE_URL="$BENCH_DATABASE_URL" DATABASE_SCHEMA="bench_pay_$$"
  backend="postgresql"
else
  backend="sqlite"
fi
cleanup() {
  if [ -n "${BENCH_DATABASE_URL:-}" ]; then
    psql "$BENCH_DATABASE_URL" -qc "DROP SCHEMA IF EXISTS bench_pay_$$ CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$DATA_DIR"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), backend ${backend}, profile ${PROFILE}"
echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== ${ORDERS} notifications, ${CONCURRENCY} connections"
"$BIN/loadgen" notify --orders "$ORDERS" --concurrency "$CONCURRENCY"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
