#!/bin/sh
# Writes Prometheus's configuration from the environment, then runs it.
#
# The tokens come from the environment (compose's BANK_TOKEN and RESONATE_TOKEN)
# and go into a file only this container's user reads: Prometheus reads bearer
# tokens from files, never from its environment. Scraped every SCRAPE_INTERVAL:
#   banks    source-bank:5001, target-bank:5002   (BANK_TOKEN)
#   store    promise-store:8001                   (RESONATE_TOKEN; absent on Postgres)
#   workers  every address of `worker`, port 9100 (no token: an internal port)
# and records crossbank:money_in_flight_cents (cents debited, not yet credited or returned).
set -eu

: "${BANK_TOKEN:?set BANK_TOKEN}"
: "${SCRAPE_INTERVAL:=5s}"
dir=/tmp/crossbank-prometheus
mkdir -p "$dir"
umask 077
printf '%s' "$BANK_TOKEN" > "$dir/bank-token"
printf '%s' "${RESONATE_TOKEN:-}" > "$dir/store-token"
store_job=""
if [ -n "${RESONATE_TOKEN:-}" ] && [ "${SCRAPE_STORE:-true}" = "true" ]; then
    store_job="
  - job_name: store
    authorization: {credentials_file: $dir/store-token}
    static_configs: [{targets: ['promise-store:8001']}]"
fi
# One series to alert on: debited at the source, neither credited nor returned yet.
cat > "$dir/rules.yml" <<'YAML'
groups:
  - name: crossbank
    rules:
      - record: crossbank:money_in_flight_cents
        expr: >
          sum(crossbank_bank_ledger_cents{bank="source", kind="debit"})
          - sum(crossbank_bank_ledger_cents{bank="source", kind="reversal"})
          - sum(crossbank_bank_ledger_cents{bank="target", kind="credit"})
YAML
cat > "$dir/prometheus.yml" <<YAML
global:
  scrape_interval: $SCRAPE_INTERVAL
  evaluation_interval: $SCRAPE_INTERVAL
rule_files: ['$dir/rules.yml']
scrape_configs:
  - job_name: banks
    authorization: {credentials_file: $dir/bank-token}
    static_configs: [{targets: ['source-bank:5001', 'target-bank:5002']}]
  - job_name: workers
    dns_sd_configs: [{names: [worker], type: A, port: 9100, refresh_interval: 5s}]$store_job
YAML
exec prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path=/prometheus \
    --web.listen-address=0.0.0.0:9090 "$@"
