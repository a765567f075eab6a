#!/usr/bin/env bash
# A real Prometheus server (Debian's prometheus 2.42) scrapes the processor's /metrics every
# second: the target is up, and the commands counter it stores moves with the commands sent.
# promtool's lint of the same text is in http.sh; this proves a server parses and keeps it.
source "$(dirname "$0")/lib.sh"
require_services
command -v prometheus >/dev/null || fail "prometheus not found (Debian package prometheus; deploy/local/deps.sh)"

SKU="$RUN_ID-CLOCK"
start_processor
target=$(http_base)
target=${target#http://}

# A free port for the server: bind 0, read what the kernel gave, release it.
prom_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$WORK_DIR/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: allocation-processor
    static_configs:
      - targets: ["$target"]
YAML
prometheus --config.file="$WORK_DIR/prometheus.yml" --storage.tsdb.path="$WORK_DIR/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" >"$WORK_DIR/prometheus.log" 2>&1 &
PROM_PID=$!
stop_prometheus() { kill "$PROM_PID" 2>/dev/null || true; wait "$PROM_PID" 2>/dev/null || true; }
trap 'stop_prometheus; cleanup' EXIT

# query PROMQL: the first sample's value, empty when there is none.
query() {
    curl -s --get "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" |
        jq -r '.data.result[0].value[1] // empty' 2>/dev/null
}
target_up() { [[ "$(query "up{job=\"allocation-processor\"}")" == 1 ]]; }
wait_for "Prometheus to scrape the processor" 60 target_up

applied() { query "sum(allocation_commands_total{outcome=\"applied\"})"; }
# The scrape that made the target up stored every series the processor had then.
before=$(applied)
before=${before:-0}
{
    printf '{"type":"CreateBatch","ref":"%s-b1","sku":"%s","qty":100}\n' "$RUN_ID" "$SKU"
    for i in 1 2 3 4; do
        printf '{"type":"Allocate","orderid":"%s-o%d","sku":"%s","qty":1}\n' "$RUN_ID" "$i" "$SKU"
    done
} | produce "$SKU"
moved() { [[ "$(applied)" -ge $((before + 5)) ]]; }
wait_for "Prometheus to store 5 more applied commands (from $before)" 60 moved

stop_processor TERM
pass
