#!/usr/bin/env bash
# Run schemathesis (PyPI: `pip install schemathesis`) against the real binary's OpenAPI document.
#
# Builds the binary (dev profile), starts it on a free port with the demo configuration in a
# temporary data_dir, with keys required and an admin key made for the run, waits until every
# source is loaded, runs schemathesis against /api/v1/openapi.json, stops the server by its PID
# and exits non-zero when schemathesis found a failure.
#
#   scripts/schemathesis.sh                   # every check below, 100 examples per operation
#   EXAMPLES=20 scripts/schemathesis.sh       # quicker
#   CHECKS=not_a_server_error scripts/schemathesis.sh
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
examples="${EXAMPLES:-100}"
checks="${CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance}"
command -v st >/dev/null || { echo "schemathesis is not installed: pip install schemathesis" >&2; exit 2; }

cd "$repo"
cargo build --bin cruscotto
binary="${CARGO_TARGET_DIR:-$repo/target}/debug/cruscotto"

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The demo, with its own data_dir, keys required and a rate limit the run stays under.
cp cruscotto.toml "$work/"
for folder in connectors queries dashboards datasets; do
    mkdir -p "$work/$folder"
    cp "$folder"/*.* "$work/$folder/" 2>/dev/null || true
done
ln -s "$repo/data" "$work/data"
sed -i -e 's/^anonymous = .*/anonymous = "none"/' -e 's/^requests_per_minute = .*/requests_per_minute = 1000000/' \
    -e 's/^burst = .*/burst = 1000000/' "$work/cruscotto.toml"
config="$work/cruscotto.toml"

key="$("$binary" --config "$config" keys create --name schemathesis --role admin)"

RUST_LOG=warn "$binary" --config "$config" serve --listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
url=""
for _ in $(seq 1 600); do
    url="$(sed -n 's/^cruscotto listening on //p' "$work/server.out" | head -n1)"
    [[ -n "$url" ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.err" >&2; echo "the server exited" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$url" ]] || { echo "the server did not start listening" >&2; exit 1; }
for _ in $(seq 1 600); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")" == 200 ]] && break
    sleep 0.2
done
echo "cruscotto at $url (pid $server_pid)"

status=0
# From the temporary folder: schemathesis keeps state in ./.schemathesis, not for the repository.
cd "$work"
st run "$url/api/v1/openapi.json" \
    --checks "$checks" \
    --header "X-API-Key: $key" \
    --max-examples "$examples" \
    --seed "${SEED:-7}" \
    --request-timeout 60 \
    --generation-database none \
    --report junit --report-dir "${REPORT_DIR:-$work/report}" \
    --no-color || status=$?

if grep -q 'panicked' "$work/server.err"; then
    echo "the server panicked:" >&2
    grep -A5 'panicked' "$work/server.err" >&2
    status=1
fi
exit "$status"
