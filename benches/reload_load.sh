#!/usr/bin/env bash
# reload_load.sh - hot reloads under load from wrk: every request must succeed.
#
# Four upstreams (a second hale answering 200 from direct_response routes
# on four listeners) and the hale under test, one listener with a route per
# client path. Configs A and B differ in routes (B adds /b, A's /a/old
# becomes /a/new) and endpoints (A: upstreams 1-2 weighted 1/1; B: 2-4, 2
# weighted 3). wrk runs CONNECTIONS keep-alive connections on path /a for
# the whole run while RELOADS reloads alternate B and A through POST /reload
# (every RELOAD_GAP_S seconds, each renaming the file over the config).
# The result: wrk's request count, non-2xx responses and socket errors, and
# the reload outcomes. Any non-2xx, socket error or non-applied reload fails.
#
# Usage: HALE_BIN=target/release/hale benches/reload_load.sh
# Knobs: RELOADS=20 RELOAD_GAP_S=0.5 CONNECTIONS=64 THREADS=2 PORT_BASE=21800
set -euo pipefail
HALE_BIN=${HALE_BIN:-target/release/hale}
RELOADS=${RELOADS:-20}
RELOAD_GAP_S=${RELOAD_GAP_S:-0.5}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PORT_BASE=${PORT_BASE:-21800}
LISTEN=$PORT_BASE ADMIN=$((PORT_BASE + 1)) UP_ADMIN=$((PORT_BASE + 2)) UP_BASE=$((PORT_BASE + 10))
for tool in wrk curl jq python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[ -x "$HALE_BIN" ] || { echo "no hale binary at $HALE_BIN (cargo build --release)" >&2; exit 1; }
PIN_HALE=() PIN_LOAD=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_HALE=(taskset -c 1) PIN_LOAD=(taskset -c 0)
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

listener() { # NAME PORT ROUTES...
    local name=$1 port=$2
    shift 2
    cat <<EOF
  - name: $name
    address: { socket_address: { address: 127.0.0.1, port_value: $port } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $name
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
EOF
    printf '%s\n' "$@"
    cat <<'EOF'
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
EOF
}
endpoint() { # PORT WEIGHT
    printf '        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } }\n          load_balancing_weight: %s\n' "$1" "$2"
}
route() { # PREFIX CLUSTER
    printf '              - match: { prefix: "%s" }\n                route: { cluster: %s }' "$1" "$2"
}
cluster() { # NAME ENDPOINT-LINES
    cat <<EOF
  - name: $1
    type: STATIC
    connect_timeout: 1s
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: $1
      endpoints:
      - lb_endpoints:
$2
EOF
}

{
    printf 'admin:\n  address: { socket_address: { address: 127.0.0.1, port_value: %s } }\nstatic_resources:\n  listeners:\n' "$UP_ADMIN"
    for i in 1 2 3 4; do
        listener "up$i" $((UP_BASE + i)) \
            "              - match: { prefix: \"/\" }
                direct_response: { status: 200, body: { inline_string: \"upstream $i\" } }"
    done
} > "$WORK/upstreams.yaml"

config() { # VARIANT
    printf 'admin:\n  address: { socket_address: { address: 127.0.0.1, port_value: %s } }\nstatic_resources:\n  listeners:\n' "$ADMIN"
    if [ "$1" = A ]; then
        listener main "$LISTEN" "$(route /a/old backend)" "$(route /a backend)"
        printf '  clusters:\n'
        cluster backend "$(endpoint $((UP_BASE + 1)) 1)
$(endpoint $((UP_BASE + 2)) 1)"
    else
        listener main "$LISTEN" "$(route /b backend)" "$(route /a/new backend)" "$(route /a backend)"
        printf '  clusters:\n'
        cluster backend "$(endpoint $((UP_BASE + 2)) 3)
$(endpoint $((UP_BASE + 3)) 1)
$(endpoint $((UP_BASE + 4)) 1)"
    fi
}
config A > "$WORK/A.yaml"
config B > "$WORK/B.yaml"
cp "$WORK/A.yaml" "$WORK/hale.yaml"

wait_live() { # ADMIN_PORT PID
    for _ in $(seq 300); do
        [ "$(curl -s "http://127.0.0.1:$1/ready" 2>/dev/null)" = LIVE ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
"${PIN_LOAD[@]}" "$HALE_BIN" -c "$WORK/upstreams.yaml" --concurrency 1 --log-level warning \
    --no-watch-config 2> "$WORK/upstreams.err" &
PIDS+=($!)
wait_live "$UP_ADMIN" "$!" || { echo "upstream hale did not start:" >&2; cat "$WORK/upstreams.err" >&2; exit 1; }
"${PIN_HALE[@]}" "$HALE_BIN" -c "$WORK/hale.yaml" --concurrency 1 --log-level warning \
    --no-watch-config 2> "$WORK/hale.err" &
HALE_PID=$!
PIDS+=("$HALE_PID")
wait_live "$ADMIN" "$HALE_PID" || { echo "hale did not start:" >&2; cat "$WORK/hale.err" >&2; exit 1; }

duration=$(python3 -c "import math; print(math.ceil($RELOADS * $RELOAD_GAP_S) + 4)")
echo "== wrk -t$THREADS -c$CONNECTIONS -d${duration}s http://127.0.0.1:$LISTEN/a, $RELOADS reloads every ${RELOAD_GAP_S}s"
"${PIN_LOAD[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${duration}s" "http://127.0.0.1:$LISTEN/a" > "$WORK/wrk.txt" 2>&1 &
WRK_PID=$!
sleep 2
failed=0
applied=0
for i in $(seq "$RELOADS"); do
    if (( i % 2 )); then v=B; else v=A; fi
    cp "$WORK/$v.yaml" "$WORK/hale.yaml.new"
    mv -f "$WORK/hale.yaml.new" "$WORK/hale.yaml"
    outcome=$(curl -s -X POST "http://127.0.0.1:$ADMIN/reload" | jq -r '.outcome // "none"')
    if [ "$outcome" = applied ]; then applied=$((applied + 1)); else echo "reload $i (-> $v): $outcome" >&2; failed=1; fi
    sleep "$RELOAD_GAP_S"
done
wait "$WRK_PID" || true
cat "$WORK/wrk.txt"
requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$WORK/wrk.txt")
sockerr=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$WORK/wrk.txt")
echo "== reloads applied: $applied of $RELOADS; requests: ${requests:-?}; non-2xx: ${non2xx:-0}; socket errors: ${sockerr:-0}"
# Both configs served: every upstream (A: 1-2, B: 2-4) got requests.
stats=$(curl -s "http://127.0.0.1:$UP_ADMIN/stats")
for i in 1 2 3 4; do
    n=$(awk -F': ' -v k="http.up$i.downstream_rq_total" '$1 == k {print $2}' <<< "$stats")
    echo "   upstream $i: ${n:-0} requests"
    [ "${n:-0}" -gt 0 ] || { echo "upstream $i got no requests" >&2; failed=1; }
done
[ "${non2xx:-0}" = 0 ] && [ "${sockerr:-0}" = 0 ] && [ -n "${requests:-}" ] || failed=1
kill -0 "$HALE_PID" 2>/dev/null || { echo "hale died" >&2; failed=1; }
[ -s "$WORK/hale.err" ] && { echo "hale stderr:"; head -n 20 "$WORK/hale.err" | sed 's/^/  /'; }
[ "$failed" = 0 ] || { echo "FAILED" >&2; exit 1; }
echo "OK: zero failed requests across $RELOADS reloads"
