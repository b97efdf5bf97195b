#!/usr/bin/env bash
# The crash demo in containers: kill the worker container mid-credit and watch the
# transfer finish anyway, every op applied once, the audit clean.
#
#   scripts/crash-demo-compose.sh            # uses (and starts) the compose project
#
# 1. bring the system up with fault injection on the target bank and a short lease;
# 2. park the next credit on the target bank (a "hold" fault), start a transfer;
# 3. once the credit is parked, `docker kill` the worker: the saga has debited the
#    source and is waiting for the credit, and its process is gone;
# 4. show the ledgers half done (money has left alice and not reached carol);
# 5. start a worker again; after the dead worker's lease runs out
#    the new one resumes the saga from its last checkpoint;
# 6. show the transfer committed, the balances, and the audit clean.
#
# Environment: BANK_TOKEN and RESONATE_TOKEN (from the environment or .env; when
# neither has one, this run makes a fresh one and prints it), LEASE_TTL (5 here),
# BANK_TIMEOUT (60 here), COMPOSE (auto: `docker compose` if present, else
# `docker-compose`), and compose.yaml's *_PORT variables.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${COMPOSE:-}" ]; then
    if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE="docker-compose"; fi
fi
export TARGET_BANK_FAULTS=on
export LEASE_TTL=${LEASE_TTL:-5}
# The worker waits this long for the parked credit, so it is still waiting when killed.
export BANK_TIMEOUT=${BANK_TIMEOUT:-60}
TRANSFER_ID=crash-demo-$(date +%s)

# compose.yaml refuses to run without its tokens; a demo run makes any that are missing.
has_setting() { [ -n "${!1:-}" ] || grep -qs "^$1=." .env; }
for name in BANK_TOKEN RESONATE_TOKEN; do
    if ! has_setting "$name"; then
        export "$name=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
        echo "$name is not set: this run uses a fresh one; to reach the system afterwards: export $name=${!name}"
    fi
done
AMOUNT=25.00

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
compose() { $COMPOSE "$@"; }
cli() { compose run --rm --no-deps orchestrator "$@" 2>/dev/null; }

# Talk to the target bank's fault-injection admin API from inside its own container
# (the slim image has python3, not curl).
#   target_admin METHOD PATH [JSON_BODY]   one call, prints the answer
#   target_admin WAIT-HOLD OP_ID           returns once a request for OP_ID is parked
ADMIN_PY='
import os, sys, time, urllib.request

def call(method, path, body=None):
    request = urllib.request.Request(
        "http://127.0.0.1:" + os.environ["PORT"] + path, data=body, method=method
    )
    request.add_header("Content-Type", "application/json")
    if os.environ.get("BANK_TOKEN"):
        request.add_header("Authorization", "Bearer " + os.environ["BANK_TOKEN"])
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()

if sys.argv[1] == "WAIT-HOLD":
    deadline = time.monotonic() + 60
    while sys.argv[2] not in call("GET", "/admin/holds"):
        if time.monotonic() > deadline:
            sys.exit(f"no request for {sys.argv[2]} was parked within 60s")
        time.sleep(0.1)
else:
    print(call(sys.argv[1], sys.argv[2], sys.argv[3].encode() if len(sys.argv) > 3 else None))
'
target_admin() { compose exec -T target-bank python3 -c "$ADMIN_PY" "$@"; }

wait_healthy() {
    local waited=0
    until [ "$(compose ps | grep -c '(healthy)')" -ge 4 ]; do
        [ $waited -lt 120 ] || { compose ps; echo "the system did not become healthy" >&2; exit 1; }
        sleep 1
        waited=$((waited + 1))
    done
}

say "1. start the system (target bank with fault injection, lease ${LEASE_TTL}s)"
compose up -d
wait_healthy
cli accounts seed >/dev/null
cli balances

say "2. park the next credit on the target bank, start transfer $TRANSFER_ID ($AMOUNT alice -> carol)"
target_admin PUT /admin/faults '{"faults": [{"action": "hold_before", "kind": "credit", "times": 1}]}' >/dev/null
cli transfer --from alice --to carol --amount "$AMOUNT" --id "$TRANSFER_ID" --no-wait
target_admin WAIT-HOLD "$TRANSFER_ID-credit"
echo "the credit $TRANSFER_ID-credit is parked at the target bank"

say "3. docker kill the worker (SIGKILL) mid-credit"
docker kill "$(compose ps -q worker)" >/dev/null
compose ps worker

say "4. the ledgers, half done: alice was debited, carol not yet credited"
cli balances
cli status "$TRANSFER_ID" || true

say "5. start a worker again; it takes the saga over once the dead worker's lease expires"
compose up -d worker
cli transfer --from alice --to carol --amount "$AMOUNT" --id "$TRANSFER_ID"
# The request the dead worker left parked replays an op already applied: nothing changes.
target_admin DELETE /admin/faults >/dev/null

say "6. the result"
cli status "$TRANSFER_ID"
cli balances
cli audit
