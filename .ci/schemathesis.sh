#!/usr/bin/env bash
# Fuzzes the API against its own OpenAPI document with schemathesis: no
# response may be a 5xx, and every response must match its schema.
# Usage: .ci/schemathesis.sh [HERD_BINARY]   (default target/debug/herd)
#
# The daemon runs on a free loopback port with a temp HERD_HOME and an empty
# PATH (generated commands can only name programs by absolute path), and is
# stopped by its pid. POST /v1/backup is left out: it writes a file wherever
# the request says, and a fuzzer must not choose where root writes.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/debug/herd}"
home="$(mktemp -d)"
mkdir -p "$home/data" "$home/empty-path"
printf '[limits]\nmax_sessions = 50\nidle_timeout = "1m"\n' > "$home/herd.toml"
PATH="$home/empty-path" "$bin" serve --listen 127.0.0.1:0 --config "$home/herd.toml" \
  --data-dir "$home/data" 2> "$home/daemon.log" &
pid=$!
cleanup() {
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$home"
}
trap cleanup EXIT
for _ in $(seq 300); do [ -s "$home/data/url" ] && break; sleep 0.1; done
url="$(cat "$home/data/url")"
token="$(cat "$home/data/token")"
schemathesis run "$url/v1/openapi.json" \
  --url "$url" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance \
  --exclude-path /v1/backup \
  --phases examples,coverage,fuzzing \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
  --max-time "${SCHEMATHESIS_MAX_TIME:-120}" \
  --request-timeout 320 \
  --workers 2
