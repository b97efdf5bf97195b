#!/usr/bin/env bash
# Bring a Docker engine and crossbank's images to a machine that may have neither
# a Docker engine nor access to an image registry, and take the engine away again.
#
#   scripts/ci-docker.sh setup   install docker.io/docker-compose/debootstrap if missing,
#                                start dockerd if no engine answers, and make the
#                                python:3.13-slim base image if it is absent
#   scripts/ci-docker.sh build   build crossbank-{bank,promise-store,orchestrator,postgres,prometheus}:dev
#   scripts/ci-docker.sh stop    stop the dockerd that `setup` started (nothing else)
#   scripts/ci-docker.sh all     setup, then build
#
# Every step is skipped when its result is already there, so running it twice is
# cheap. Each step prints how long it took. The base image comes from the registry
# when one answers; otherwise it is made offline with debootstrap (deploy/README.md,
# "CI on a machine with no Docker engine and no registry"). That stand-in is a CI
# concern only: the Dockerfiles stay ordinary `FROM python:3.13-slim`.
#
# Environment:
#   CROSSBANK_IMAGE_TAG   tag of the built images (dev)
#   CROSSBANK_STATE_DIR   where dockerd's log and pid file go (/tmp/crossbank-docker)
#   DEBIAN_MIRROR         mirror for debootstrap (default: the Debian mirror in apt's sources)
#   BASE_IMAGE_SUITE      Debian suite of the stand-in (trixie: Python 3.13)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TAG=${CROSSBANK_IMAGE_TAG:-dev}
STATE_DIR=${CROSSBANK_STATE_DIR:-/tmp/crossbank-docker}
BASE_IMAGE=python:3.13-slim
SUITE=${BASE_IMAGE_SUITE:-trixie}
TARGETS=(bank promise-store orchestrator postgres prometheus)

say() { printf '[ci-docker] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# step NAME CMD...: run CMD, print its duration, fail loudly with NAME if it fails.
step() {
    local name=$1; shift
    local started=$SECONDS
    say "$name ..."
    if ! "$@"; then
        die "$name failed after $((SECONDS - started))s"
    fi
    say "$name: done in $((SECONDS - started))s"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

engine_answers() { docker info >/dev/null 2>&1; }

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ ${#missing[@]} -eq 0 ]; then
        say "packages: dockerd, docker-compose and debootstrap already installed"
        return 0
    fi
    say "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

start_engine() {
    if engine_answers; then
        say "engine: a Docker engine already answers; leaving it alone"
        return 0
    fi
    command -v dockerd >/dev/null || die "dockerd is not installed (run: $0 setup)"
    mkdir -p "$STATE_DIR"
    say "engine: starting dockerd (log: $STATE_DIR/dockerd.log)"
    # A simple command in the background, so $! is dockerd's (or sudo's) own pid.
    if [ "$(id -u)" -eq 0 ]; then
        dockerd >"$STATE_DIR/dockerd.log" 2>&1 &
    else
        sudo dockerd >"$STATE_DIR/dockerd.log" 2>&1 &
    fi
    echo $! >"$STATE_DIR/dockerd.pid"
    local waited=0
    until engine_answers; do
        if ! kill -0 "$(cat "$STATE_DIR/dockerd.pid")" 2>/dev/null; then
            tail -20 "$STATE_DIR/dockerd.log" >&2 || true
            die "dockerd exited while starting; see $STATE_DIR/dockerd.log"
        fi
        if [ $waited -ge 60 ]; then
            die "dockerd did not answer within 60s; see $STATE_DIR/dockerd.log"
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

# The Debian mirror apt already uses, read from its sources (one-line `deb URI ...`
# and deb822 `URIs:` lines), so debootstrap reaches the same place apt does. No
# host is assumed: with none found, DEBIAN_MIRROR must say where.
debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local sources=() found
    [ -f /etc/apt/sources.list ] && sources+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && sources+=("$f")
    done
    [ ${#sources[@]} -gt 0 ] || die "no apt sources found; set DEBIAN_MIRROR to a Debian mirror"
    found=$(sed -nE \
        -e 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([a-z+]+:\/\/[^[:space:]]+).*/\2/p' \
        -e 's/^[[:space:]]*URIs:[[:space:]]*//p' "${sources[@]}" \
        | tr ' ' '\n' | grep -E '^[a-z+]+://' | grep -v -- '-security' | grep -E '/debian/?$' | head -1) || true
    [ -n "$found" ] || die "no Debian mirror in the apt sources; set DEBIAN_MIRROR"
    echo "$found"
}

make_base_image_offline() {
    command -v debootstrap >/dev/null || die "debootstrap is not installed (run: $0 setup)"
    local dir
    dir=$(mktemp -d /tmp/crossbank-rootfs.XXXXXX)
    local mirror
    mirror=$(debian_mirror)
    say "base image: debootstrap $SUITE from $mirror into $dir"
    if ! as_root debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$dir" "$mirror" >"$STATE_DIR/debootstrap.log" 2>&1; then
        tail -20 "$STATE_DIR/debootstrap.log" >&2 || true
        as_root rm -rf "$dir"
        die "debootstrap failed; see $STATE_DIR/debootstrap.log"
    fi
    # pip in a container reaches the index only through host networking and the
    # host's CA bundle; tell pip where the bundle is.
    as_root cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' | as_root tee "$dir/etc/pip.conf" >/dev/null
    as_root rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"*
    as_root tar -C "$dir" -c . | docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' \
        -c 'CMD ["python3"]' \
        - "$BASE_IMAGE" >/dev/null
    as_root rm -rf "$dir"
}

base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "base image: $BASE_IMAGE already present"
        return 0
    fi
    if [ "${CROSSBANK_OFFLINE_BASE:-}" != 1 ] && timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
        say "base image: pulled $BASE_IMAGE from the registry"
        return 0
    fi
    say "base image: no registry answers; making a stand-in offline"
    make_base_image_offline
}

build_images() {
    engine_answers || die "no Docker engine answers (run: $0 setup)"
    if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && ! timeout 120 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
        die "$BASE_IMAGE is missing and cannot be pulled (run: $0 setup)"
    fi
    local target built_at
    # The container tests compare this with the source files' times to spot stale images.
    built_at=$(date +%s)
    for target in "${TARGETS[@]}"; do
        step "build crossbank-$target:$TAG" \
            docker build --quiet --network host --target "$target" --label "crossbank.built-at=$built_at" \
            -f "$ROOT/deploy/Dockerfile" -t "crossbank-$target:$TAG" "$ROOT" >/dev/null
    done
    # Earlier builds of these images, now untagged: only ours carry the label.
    docker image prune -f --filter label=crossbank.built-at >/dev/null
    docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^crossbank-|^$BASE_IMAGE" >&2 || true
}

stop_engine() {
    local pidfile=$STATE_DIR/dockerd.pid
    if [ ! -f "$pidfile" ]; then
        say "stop: no dockerd was started by this script"
        return 0
    fi
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        # Containers left behind by a failed test would keep the engine busy.
        local left
        left=$(docker ps -q 2>/dev/null || true)
        if [ -n "$left" ]; then
            # shellcheck disable=SC2086
            docker kill $left >/dev/null 2>&1 || true
        fi
        as_root kill "$pid"
        local waited=0
        while kill -0 "$pid" 2>/dev/null && [ $waited -lt 30 ]; do
            sleep 1
            waited=$((waited + 1))
        done
        kill -0 "$pid" 2>/dev/null && as_root kill -9 "$pid"
        say "stop: dockerd (pid $pid) stopped"
    fi
    rm -f "$pidfile"
}

main() {
    mkdir -p "$STATE_DIR"
    case "${1:-}" in
        setup)
            step "install packages" install_packages
            step "start Docker engine" start_engine
            step "base image $BASE_IMAGE" base_image
            ;;
        build) build_images ;;
        stop) stop_engine ;;
        all)
            main setup
            main build
            ;;
        *)
            echo "usage: $0 setup|build|stop|all" >&2
            exit 2
            ;;
    esac
}

main "$@"
