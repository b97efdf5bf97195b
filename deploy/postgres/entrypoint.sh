#!/bin/sh
# Resonate's server on Postgres, for crossbank: on the first start, make the
# cluster, apply resonate.sql (mounted, never baked in) and crossbank.sql; then
# run Postgres in the foreground.
#
# Environment (see deploy/README.md):
#   RESONATE_DB_PASSWORD   required: the password of the `crossbank` role the workers use
#   RESONATE_SQL           where resonate.sql is mounted (/etc/resonate/resonate.sql)
#   RESONATE_SQL_SHA256    its expected sha256; empty: not checked
#   RESONATE_DB            the database (resonate)
#   PGPORT                 the port Postgres listens on (5432)
#   PGDATA                 the cluster (/data/pgdata)
#   RESONATE_TIMER_INTERVAL  pg_cron's interval for process_timeouts() (1 seconds)
#   RESONATE_GC_AFTER_DAYS   finished promises kept this many days (30)
# They are read on the first start only, when the cluster is made. On every start:
#   TLS_CERT_FILE, TLS_KEY_FILE  serve TLS with this certificate and key (compose.tls.yaml)
set -eu

RESONATE_SQL=${RESONATE_SQL:-/etc/resonate/resonate.sql}
RESONATE_DB=${RESONATE_DB:-resonate}
PGDATA=${PGDATA:-/data/pgdata}
export PGDATA

die() { echo "crossbank-postgres: $*" >&2; exit 1; }

initialise() {
    [ -n "${RESONATE_DB_PASSWORD:-}" ] || die "RESONATE_DB_PASSWORD is not set: the workers' role needs a secret password"
    [ -f "$RESONATE_SQL" ] && [ -r "$RESONATE_SQL" ] \
        || die "no readable resonate.sql at $RESONATE_SQL: mount it there (RESONATE_SQL in compose; see deploy/README.md)"
    if [ -n "${RESONATE_SQL_SHA256:-}" ]; then
        echo "$RESONATE_SQL_SHA256  $RESONATE_SQL" | sha256sum -c --status \
            || die "$RESONATE_SQL is not the expected resonate.sql (sha256 $(sha256sum "$RESONATE_SQL" | cut -d' ' -f1), expected $RESONATE_SQL_SHA256)"
    fi
    # Made beside its place and moved there once complete: a first start that fails
    # halfway leaves no cluster that a second start would take for a finished one.
    final=$PGDATA
    PGDATA=$final.partial
    rm -rf "$PGDATA"
    echo "crossbank-postgres: making the cluster in $final"
    initdb --username=postgres --encoding=UTF8 --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    cat >>"$PGDATA/postgresql.conf" <<CONF
listen_addresses = '*'
password_encryption = 'scram-sha-256'
shared_preload_libraries = 'pg_cron'
cron.database_name = '$RESONATE_DB'
# Jobs run in background workers: no connection, so no password for pg_cron to hold.
cron.use_background_workers = on
max_worker_processes = 16
# A job every second: keep pg_cron's history table and the log quiet.
cron.log_run = off
cron.log_statement = off
CONF
    # Over the network only the workers' role, only to its database, only with its password.
    cat >"$PGDATA/pg_hba.conf" <<HBA
local all  postgres peer
host  $RESONATE_DB crossbank all scram-sha-256
HBA
    # Socket-only while the schema goes in: the healthcheck (default socket) and the
    # workers (TCP) see nothing until the database is complete.
    setup_socket=$(mktemp -d)
    pg_ctl --wait --silent -o "-c listen_addresses='' -k $setup_socket" start
    psql --quiet -h "$setup_socket" -d postgres -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$RESONATE_DB\""
    psql --quiet -h "$setup_socket" -d "$RESONATE_DB" -v ON_ERROR_STOP=1 -f "$RESONATE_SQL" >/dev/null
    psql --quiet -h "$setup_socket" -d "$RESONATE_DB" -v ON_ERROR_STOP=1 \
        -v worker_password="$RESONATE_DB_PASSWORD" \
        -v timer_interval="${RESONATE_TIMER_INTERVAL:-1 seconds}" \
        -v gc_after_days="${RESONATE_GC_AFTER_DAYS:-30}" \
        -f /usr/local/share/crossbank/crossbank.sql >/dev/null
    pg_ctl --wait --silent -m fast stop
    rmdir "$setup_socket"
    mv "$PGDATA" "$final"
    PGDATA=$final
    echo "crossbank-postgres: resonate.sql and crossbank.sql applied to database $RESONATE_DB"
}

[ -s "$PGDATA/PG_VERSION" ] || initialise
if [ -n "${TLS_CERT_FILE:-}" ] && [ -n "${TLS_KEY_FILE:-}" ]; then
    # Postgres takes a key only from a file its own user owns and nobody else may read:
    # a copy in the cluster, made afresh each start from the mounted one.
    cp "$TLS_CERT_FILE" "$PGDATA/server.crt"
    (umask 077 && cp "$TLS_KEY_FILE" "$PGDATA/server.key")
    echo "crossbank-postgres: serving TLS with $TLS_CERT_FILE"
    exec postgres -c ssl=on -c ssl_cert_file="$PGDATA/server.crt" -c ssl_key_file="$PGDATA/server.key"
fi
exec postgres
