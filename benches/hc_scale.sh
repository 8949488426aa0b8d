#!/usr/bin/env bash
# hc_scale.sh - CPU that active health checking costs: hale beside HAProxy,
# each checking N endpoints (distinct 127.x.y.z addresses of one local nginx)
# over HTTP every second. Nothing else runs through either proxy.
#
#   HALE_BIN=target/release/hale benches/hc_scale.sh
#
# Knobs: N=10000 endpoints, WARMUP=15 s before measuring, MEASURE=30 s,
#        PORT=21800 (nginx listens on every address of that port).
# Pinning: nginx on CPU 0, the checker under test on CPU 1.
# Output: one line per checker, and `RESULT hc-<name>=checks_per_s:..,cpu_pct:..,us_per_check:..`.
set -euo pipefail

N=${N:-10000}
WARMUP=${WARMUP:-15}
MEASURE=${MEASURE:-30}
PORT=${PORT:-21800}
STATUS_PORT=$((PORT + 1))
HALE_BIN=${HALE_BIN:-target/release/hale}

for tool in nginx haproxy taskset; do
    if ! command -v "$tool" >/dev/null; then
        echo "installing $tool" >&2
        apt-get update -qq >/dev/null && apt-get install -y -qq "$tool" >/dev/null
    fi
done
[ -x "$HALE_BIN" ] || { echo "HALE_BIN=$HALE_BIN is not executable" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
# Each checker may hold a connection per endpoint.
ulimit -n "$(ulimit -Hn)"
FDS=$(ulimit -n)

# Endpoint i -> 127.A.B.C, skipping .0 and .255 host parts.
addr() {
    local i=$1
    echo "127.$((1 + i / 62500)).$(((i / 250) % 250 + 1)).$((i % 250 + 1))"
}

cat > "$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
worker_rlimit_nofile $FDS;
events { worker_connections $((FDS - 100)); }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 3600s;
    server { listen $PORT backlog=4096; location = /healthz { return 200 "ok\n"; } }
    server { listen 127.0.0.1:$STATUS_PORT; location = /status { stub_status; } }
}
EOF

{
cat <<EOF
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: $((PORT + 2)) }
static_resources:
  clusters:
  - name: many
    type: STATIC
    connect_timeout: 1s
    health_checks:
    - timeout: 1s
      interval: 1s
      no_traffic_interval: 1s
      initial_jitter: 1s
      unhealthy_threshold: 2
      healthy_threshold: 2
      http_health_check: { path: /healthz }
    load_assignment:
      cluster_name: many
      endpoints:
      - lb_endpoints:
EOF
for ((i = 0; i < N; i++)); do
    echo "        - endpoint: { address: { socket_address: { address: $(addr "$i"), port_value: $PORT } } }"
done
} > "$WORK/hale.yaml"

{
cat <<EOF
global
    nbthread 1
    # HAProxy reserves about 2 fds per connection plus one per checked server.
    maxconn 3000
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    timeout check 1s
frontend idle
    bind 127.0.0.1:$((PORT + 3))
    default_backend many
backend many
    option httpchk GET /healthz
EOF
for ((i = 0; i < N; i++)); do
    echo "    server s$i $(addr "$i"):$PORT check inter 1s fall 2 rise 2"
done
} > "$WORK/haproxy.cfg"

taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" &
PIDS+=($!)
sleep 1

nginx_requests() {
    curl -s "http://127.0.0.1:$STATUS_PORT/status" | awk 'NR == 3 { print $3 }'
}

cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

measure() {
    local name=$1 pid=$2
    sleep "$WARMUP"
    local r1 c1 r2 c2
    r1=$(nginx_requests); c1=$(cpu_ticks "$pid")
    sleep "$MEASURE"
    r2=$(nginx_requests); c2=$(cpu_ticks "$pid")
    python3 - "$name" "$r1" "$r2" "$c1" "$c2" "$MEASURE" "$(getconf CLK_TCK)" <<'PY'
import sys
name, r1, r2, c1, c2, secs, tck = sys.argv[1], *map(float, sys.argv[2:])
checks = (r2 - r1) / secs
cpu_s = (c2 - c1) / tck
pct = 100 * cpu_s / secs
us = 1e6 * cpu_s / max(1, r2 - r1)
print(f"{name:8} checks/s {checks:9.0f}   cpu {pct:5.1f}% of a core   {us:6.2f} us/check")
print(f"RESULT hc-{name}=checks_per_s:{checks:.0f},cpu_pct:{pct:.1f},us_per_check:{us:.2f}")
PY
}

echo "== $N endpoints, HTTP checks every 1 s (warm-up ${WARMUP}s, measured ${MEASURE}s)"

taskset -c 1 haproxy -db -f "$WORK/haproxy.cfg" > "$WORK/haproxy.log" 2>&1 &
HP=$!; PIDS+=($HP)
measure haproxy "$HP"
kill "$HP"; wait "$HP" 2>/dev/null || true

taskset -c 1 "$HALE_BIN" -c "$WORK/hale.yaml" --concurrency 1 --log-level warning > "$WORK/hale.log" 2>&1 &
HL=$!; PIDS+=($HL)
measure hale "$HL"
kill "$HL"; wait "$HL" 2>/dev/null || true
