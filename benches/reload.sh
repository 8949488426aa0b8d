#!/usr/bin/env bash
# reload.sh - how long a hot reload of a large config takes.
#
# hale serves a generated bootstrap of N_CLUSTERS STATIC clusters of
# N_ENDPOINTS endpoints each (127.0.0.1, distinct ports from 30000 that
# nothing listens on), one listener with one virtual host routing prefix
# /c<i>/ to cluster c<i>, pinned to CPU 1 with one worker and the file watch
# off (--no-watch-config), so only POST /reload triggers. Each round writes a
# variant of the file aside, renames it over the config, then POSTs /reload
# from CPU 0 and records hale's took_ms (reload taken up to the swap of the
# new world) and curl's time_total for the POST (client side). Scenarios:
#   A<->B      ROUNDS reloads alternating the original (A) and B, which
#              changes one route's prefix and one cluster's endpoints (c0
#              gets one more endpoint and one re-weighted);
#   unchanged  one reload of the same content (outcome unchanged; hale
#              reports no took_ms for it, so only the client's time);
#   A<->C      ROUNDS_ALL reloads alternating A and C, in which every
#              cluster's endpoints change (all new ports).
# Every outcome must be "applied" ("unchanged" for the unchanged round),
# or the script exits 1 after printing the figures.
#
# Usage: HALE_BIN=target/release/hale benches/reload.sh
# Knobs: N_CLUSTERS=1000  N_ENDPOINTS=10  ROUNDS=20  ROUNDS_ALL=5  FORMAT=yaml|json
#        CHECKS=0 (1: a TCP health check per cluster, interval 5s, timeout 1s)
#        PORT_BASE=21700 (listener; admin on PORT_BASE+1)
set -euo pipefail
HALE_BIN=${HALE_BIN:-target/release/hale}
FORMAT=${FORMAT:-yaml}
N_CLUSTERS=${N_CLUSTERS:-1000}
N_ENDPOINTS=${N_ENDPOINTS:-10}
ROUNDS=${ROUNDS:-20}
ROUNDS_ALL=${ROUNDS_ALL:-5}
CHECKS=${CHECKS:-0}
PORT_BASE=${PORT_BASE:-21700}
LISTEN=$PORT_BASE ADMIN=$((PORT_BASE + 1))
UPSTREAM_BASE=30000
for tool in python3 curl jq; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[ -x "$HALE_BIN" ] || { echo "no hale binary at $HALE_BIN (cargo build --release)" >&2; exit 1; }
# Variant C uses a second block of ports after A's (and B's extra one).
if (( UPSTREAM_BASE + 2 * N_CLUSTERS * N_ENDPOINTS + 1 > 65535 )); then
    echo "N_CLUSTERS x N_ENDPOINTS too large for the port range" >&2; exit 1
fi
PIN_HALE=() PIN_CLIENT=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_HALE=(taskset -c 1) PIN_CLIENT=(taskset -c 0)
fi
WORK=$(mktemp -d)
cleanup() {
    if [ -n "${HALE_PID:-}" ]; then
        kill "$HALE_PID" 2>/dev/null || true
        wait "$HALE_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/gen.py" <<'PY'
import sys
n_clusters, n_endpoints, checks, listen, admin, up_base = map(int, sys.argv[1:7])
variant, out = sys.argv[7], sys.argv[8]
extra_port = up_base + n_clusters * n_endpoints      # B's 11th endpoint of c0
c_base = extra_port + 1                              # C's ports

def endpoints(i):
    base = c_base if variant == "C" else up_base
    eps = [(base + i * n_endpoints + j, 1) for j in range(n_endpoints)]
    if variant == "B" and i == 0:
        eps[0] = (eps[0][0], 3)
        eps.append((extra_port, 1))
    return eps

w = []
w.append(f"""admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: main
          route_config:
            name: many
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
""")
for i in range(n_clusters):
    prefix = f"/c{i}b/" if variant == "B" and i == 0 else f"/c{i}/"
    w.append(f'              - match: {{ prefix: "{prefix}" }}\n'
             f'                route: {{ cluster: c{i} }}\n')
w.append("""          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
""")
check = """    health_checks:
    - timeout: 1s
      interval: 5s
      unhealthy_threshold: 2
      healthy_threshold: 2
      tcp_health_check: {}
""" if checks else ""
for i in range(n_clusters):
    w.append(f"""  - name: c{i}
    type: STATIC
    connect_timeout: 1s
    lb_policy: ROUND_ROBIN
{check}    load_assignment:
      cluster_name: c{i}
      endpoints:
      - lb_endpoints:
""")
    for port, weight in endpoints(i):
        w.append(f"        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}\n"
                 f"          load_balancing_weight: {weight}\n")
with open(out, "w") as f:
    f.write("".join(w))
PY
for v in A B C; do
    python3 "$WORK/gen.py" "$N_CLUSTERS" "$N_ENDPOINTS" "$CHECKS" "$LISTEN" "$ADMIN" \
        "$UPSTREAM_BASE" "$v" "$WORK/$v.yaml"
done
if [ "$FORMAT" = json ]; then
    # The same documents as JSON (hale reads a .json file as JSON).
    for v in A B C; do
        python3 -c 'import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), open(sys.argv[2], "w"))' \
            "$WORK/$v.yaml" "$WORK/$v.json" || { echo "FORMAT=json needs python3's yaml module (PyYAML)" >&2; exit 1; }
    done
fi
cp "$WORK/A.$FORMAT" "$WORK/hale.$FORMAT"

echo "== config ($FORMAT): $(wc -c < "$WORK/A.$FORMAT") bytes; $N_CLUSTERS clusters x $N_ENDPOINTS endpoints" \
     "= $((N_CLUSTERS * N_ENDPOINTS)) endpoints; $N_CLUSTERS routes;" \
     "health checks: $([ "$CHECKS" = 1 ] && echo "TCP every 5s, timeout 1s, one per cluster" || echo none)"
echo "   B: $(wc -c < "$WORK/B.yaml") bytes (route /c0/ -> /c0b/; c0 +1 endpoint, one re-weighted);" \
     "C: $(wc -c < "$WORK/C.yaml") bytes (every cluster's endpoints on new ports)"

t0=$(date +%s%N)
"${PIN_HALE[@]}" "$HALE_BIN" -c "$WORK/hale.$FORMAT" --concurrency 1 --log-level warning \
    --no-watch-config 2> "$WORK/hale.err" &
HALE_PID=$!
for _ in $(seq 1200); do
    [ "$(curl -s "http://127.0.0.1:$ADMIN/ready" 2>/dev/null)" = LIVE ] && break
    kill -0 "$HALE_PID" 2>/dev/null || { echo "hale exited:" >&2; cat "$WORK/hale.err" >&2; exit 1; }
    sleep 0.1
done
[ "$(curl -s "http://127.0.0.1:$ADMIN/ready")" = LIVE ] || { echo "hale not LIVE after 120 s" >&2; exit 1; }
echo "   hale LIVE $(( ($(date +%s%N) - t0) / 1000000 )) ms after start"

rss_kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$HALE_PID/status"; }
failed=0
round=0
shown=""
# reload SCENARIO VARIANT EXPECTED_OUTCOME: write VARIANT aside, rename it
# over the config, POST /reload; one line per round in rounds.tsv.
reload() {
    round=$((round + 1))
    cp "$WORK/$2.$FORMAT" "$WORK/hale.$FORMAT.new"
    mv -f "$WORK/hale.$FORMAT.new" "$WORK/hale.$FORMAT"
    local out code wall outcome took load
    out=$("${PIN_CLIENT[@]}" curl -s -o "$WORK/resp.json" -w '%{http_code} %{time_total}' \
        -X POST "http://127.0.0.1:$ADMIN/reload" || true)
    read -r code wall <<< "$out"
    outcome=$(jq -r '.outcome // "none"' "$WORK/resp.json" 2>/dev/null || echo "no-json")
    took=$(jq -r '.took_ms // "-"' "$WORK/resp.json" 2>/dev/null || echo "-")
    load=$(jq -r '.load_ms // "-"' "$WORK/resp.json" 2>/dev/null || echo "-")
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$outcome" "$took" "$wall" "$load" >> "$WORK/rounds.tsv"
    if [ "$outcome" != "$3" ]; then
        echo "round $round ($1, -> $2): expected $3, got $outcome (HTTP ${code:-?}): $(head -c 2000 "$WORK/resp.json" 2>/dev/null)" >&2
        failed=1
    fi
    case " $shown " in *" $1 "*) ;; *)   # the first answer of each scenario
        shown="$shown $1"
        echo "   first $1 round (-> $2): $(jq -c '{outcome, generation, changes, took_ms, errors} | with_entries(select(.value != null))
            | if (.changes // "" | length) > 160 then .changes = .changes[:160] + "..." else . end' "$WORK/resp.json" 2>/dev/null || cat "$WORK/resp.json")"
    esac
}

rss_start=$(rss_kib VmRSS)
for i in $(seq "$ROUNDS"); do
    if (( i % 2 )); then reload "A<->B" B applied; else reload "A<->B" A applied; fi
done
rss_b=$(rss_kib VmRSS)
live=$( (( ROUNDS % 2 )) && echo B || echo A )
reload unchanged "$live" unchanged
for i in $(seq "$ROUNDS_ALL"); do
    if [ "$live" = A ]; then live=C; else live=A; fi
    reload "A<->C" "$live" applied
done
sleep 1
rss_end=$(rss_kib VmRSS)
hwm=$(rss_kib VmHWM)

echo "== reload times, ms (took_ms: hale's, taken up to swap; load_ms: of which reading, parsing, validating; wall: curl time_total of POST /reload)"
python3 - "$WORK/rounds.tsv" <<'PY'
import math, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    scenario, outcome, took, wall, load = line.rstrip("\n").split("\t")
    r = rows.setdefault(scenario, {"took": [], "wall": [], "load": []})
    if took not in ("-", "null", ""):
        r["took"].append(float(took))
    if load not in ("-", "null", ""):
        r["load"].append(float(load))
    if wall:
        r["wall"].append(float(wall) * 1000)
def summary(xs):
    if not xs:
        return "-"
    s = sorted(xs)
    p90 = s[max(0, math.ceil(0.9 * len(s)) - 1)]
    return f"{s[0]:.1f} / {statistics.median(s):.1f} / {p90:.1f} / {s[-1]:.1f}"
print(f"{'scenario':<10} {'rounds':>6}  {'took_ms min / median / p90 / max':<34} {'load_ms min / median / p90 / max':<34} {'wall ms min / median / p90 / max'}")
for scenario, r in rows.items():
    print(f"{scenario:<10} {len(r['wall']):>6}  {summary(r['took']):<34} {summary(r['load']):<34} {summary(r['wall'])}")
slow = {s: sum(x > 100 for x in r["wall"]) for s, r in rows.items()}
if any(slow.values()):
    print("reloads slower than 100 ms (wall): " + ", ".join(f"{s} {n} of {len(rows[s]['wall'])}" for s, n in slow.items()))
PY
echo "hale RSS before reloads: $((rss_start / 1024)) MiB; after A<->B: $((rss_b / 1024)) MiB;" \
     "after all: $((rss_end / 1024)) MiB; peak (VmHWM): $((hwm / 1024)) MiB"
gen=$(curl -fs "http://127.0.0.1:$ADMIN/stats?filter=server.config_generation" | awk -F': ' '{print $2; exit}')
echo "server.config_generation: $gen (expected $((1 + ROUNDS + ROUNDS_ALL)))"
[ "$gen" = "$((1 + ROUNDS + ROUNDS_ALL))" ] || failed=1
kill -0 "$HALE_PID" 2>/dev/null || { echo "hale died" >&2; failed=1; }
if [ -s "$WORK/hale.err" ]; then
    echo "hale stderr ($(wc -l < "$WORK/hale.err") lines, first 20):"
    head -n 20 "$WORK/hale.err" | sed 's/^/  /'
else
    echo "hale stderr: empty"
fi
[ "$failed" = 0 ] || { echo "FAILED: an outcome was not the expected one" >&2; exit 1; }
