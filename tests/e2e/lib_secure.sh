# lib_secure.sh - for the tests of authenticated, encrypted connections (sourced after lib.sh):
# a SCRAM-SHA-512 user on the test broker's SASL_SSL listener, and a Postgres cluster of the
# test's own that takes only TLS connections with a scram-sha-256 password.
#
# The broker's secure listener comes with deploy/local/services.sh (AP_KAFKA_SECURE_PORT,
# certificate from the checkout's test authority in .local/tls). The Postgres cluster is the
# test's own because turning on ssl in the shared one would move every other test onto TLS
# (libpq's default sslmode=prefer). Both trust only .local/tls/ca.pem; `untrusted_ca` makes a
# second authority that nobody trusts, for the certificate-verification failures.

AP_ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
# Unless the caller set them, the ones services.sh would print (`services.sh env`).
if [[ -z "${SECURE_KAFKA_BOOTSTRAP_SERVERS:-}" || -z "${AP_TLS_DIR:-}" ]]; then
    eval "$(bash "$AP_ROOT_DIR/deploy/local/services.sh" env | grep -E 'SECURE_KAFKA_BOOTSTRAP_SERVERS|AP_TLS_DIR')"
fi
CA_FILE="$AP_TLS_DIR/ca.pem"
SECURE_PG_PID=""
SECURE_PG_DIR=""

as_postgres() {
    if [[ "$(id -u)" -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# secure_pg_port OFFSET: AP_PG_PORT + OFFSET (read from DATABASE_URL), the port of a test's own
# Postgres: each test that starts one takes its own offset, so they can run side by side.
secure_pg_port() {
    echo $(($(sed -E 's|.*:([0-9]+)/.*|\1|' <<<"$DATABASE_URL") + $1))
}

# secret_file NAME TEXT: the path of a 0600 file holding TEXT, as a Kubernetes Secret mount.
secret_file() {
    (umask 077; printf '%s\n' "$2" >"$WORK_DIR/$1")
    echo "$WORK_DIR/$1"
}

# ready_200 [LOG]: the processor PROCESSOR_PID, writing LOG (default PROCESSOR_LOG), answers
# /readyz with 200 (fails the test when it exited).
ready_200() {
    local log=${1:-$PROCESSOR_LOG}
    kill -0 "$PROCESSOR_PID" 2>/dev/null || fail "the processor exited: $(tail -n 5 "$log")"
    grep -q 'listening on' "$log" &&
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "$(http_base "$log")/readyz")" == 200 ]]
}

# require_secure_kafka: the broker has its SASL_SSL listener (a broker started before it existed
# has not: restart it).
require_secure_kafka() {
    [[ -s "$CA_FILE" ]] || fail "no test CA at $CA_FILE: start the services with deploy/local/services.sh start"
    local host=${SECURE_KAFKA_BOOTSTRAP_SERVERS%:*} port=${SECURE_KAFKA_BOOTSTRAP_SERVERS##*:}
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null ||
        fail "nothing listens on $SECURE_KAFKA_BOOTSTRAP_SERVERS (the broker's SASL_SSL listener); a broker started by an older services.sh has none: deploy/local/services.sh restart kafka"
}

# kafka_scram_user NAME PASSWORD: made with Kafka's own ConfigCommand (services.sh scram-user).
kafka_scram_user() {
    printf '%s\n' "$2" | bash "$AP_ROOT_DIR/deploy/local/services.sh" scram-user "$1" 2>>"$WORK_DIR/scram.log" ||
        fail "making the SCRAM user $1: $(tail -n 5 "$WORK_DIR/scram.log")"
}

# secure_kafka_env USER PASSWORD_FILE [CA]: the processor's settings for the SASL_SSL listener,
# as lines of KEY=value (for env).
secure_kafka_env() {
    echo "KAFKA_BOOTSTRAP_SERVERS=$SECURE_KAFKA_BOOTSTRAP_SERVERS"
    echo "KAFKA_SECURITY_PROTOCOL=SASL_SSL"
    echo "KAFKA_SASL_MECHANISMS=SCRAM-SHA-512"
    echo "KAFKA_SASL_USERNAME=$1"
    echo "KAFKA_SASL_PASSWORD_FILE=$2"
    echo "KAFKA_SSL_CA_LOCATION=${3:-$CA_FILE}"
    echo "KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM=https"
}

# secure_kcat ARGS...: kcat on the SASL_SSL listener as SECURE_KAFKA_USER / SECURE_KAFKA_PASSWORD.
secure_kcat() {
    kcat -b "$SECURE_KAFKA_BOOTSTRAP_SERVERS" -X security.protocol=SASL_SSL \
        -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username="$SECURE_KAFKA_USER" \
        -X sasl.password="$SECURE_KAFKA_PASSWORD" -X ssl.ca.location="$CA_FILE" "$@"
}

# untrusted_ca: prints the path of a CA certificate that signed nothing the services present.
untrusted_ca() {
    bash "$AP_ROOT_DIR/deploy/local/tls.sh" "$WORK_DIR/untrusted-ca" >/dev/null
    echo "$WORK_DIR/untrusted-ca/ca.pem"
}

# secure_pg_start PORT USER PASSWORD DATABASE: a cluster of the test's own on 127.0.0.1:PORT,
# ssl=on with the test authority's server certificate; pg_hba takes only hostssl connections of
# USER with scram-sha-256 (and the postgres superuser on the unix socket, for the test itself).
# stop_secure_pg (called by secure_cleanup) stops it.
secure_pg_start() {
    local port=$1 user=$2 password=$3 db=$4 bin=${AP_PG_BIN:-/usr/lib/postgresql/15/bin}
    SECURE_PG_DIR="$WORK_DIR/pg"
    SECURE_PG_PORT=$port
    chmod 755 "$WORK_DIR"
    mkdir -p "$SECURE_PG_DIR/run"
    cp "$AP_TLS_DIR/server.pem" "$AP_TLS_DIR/server.key" "$SECURE_PG_DIR/"
    chmod 600 "$SECURE_PG_DIR/server.key"
    if [[ "$(id -u)" -eq 0 ]]; then chown -R postgres:postgres "$SECURE_PG_DIR"; fi
    as_postgres "$bin/initdb" -D "$SECURE_PG_DIR/data" -U postgres --auth-local=trust \
        --auth-host=reject --encoding=UTF8 --locale=C.UTF-8 >"$WORK_DIR/initdb.log" 2>&1 ||
        fail "initdb: $(tail -n 5 "$WORK_DIR/initdb.log")"
    as_postgres tee -a "$SECURE_PG_DIR/data/postgresql.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$SECURE_PG_DIR/run'
ssl = on
ssl_cert_file = '$SECURE_PG_DIR/server.pem'
ssl_key_file = '$SECURE_PG_DIR/server.key'
password_encryption = 'scram-sha-256'
max_connections = 40
CONF
    as_postgres tee "$SECURE_PG_DIR/data/pg_hba.conf" >/dev/null <<HBA
local    all  postgres                 trust
hostssl  all  $user     127.0.0.1/32   scram-sha-256
host     all  all       127.0.0.1/32   reject
HBA
    # Ports in the kernel's ephemeral range (32768-60999 here) can be held for a moment by a
    # client connection's local end: then the next port along is taken, up to 5 tries, and
    # SECURE_PG_PORT says which one it was (callers build their URLs from it).
    local try
    for try in 1 2 3 4 5; do
        rm -f "$SECURE_PG_DIR/server.log" # so the check below reads this try's words only
        as_postgres "$bin/pg_ctl" -D "$SECURE_PG_DIR/data" -l "$SECURE_PG_DIR/server.log" -w -t 60 start >/dev/null && break
        grep -q 'Address already in use' "$SECURE_PG_DIR/server.log" && ((try < 5)) ||
            fail "the test's Postgres did not start: $(tail -n 5 "$SECURE_PG_DIR/server.log")"
        port=$((port + 10))
        note "port $SECURE_PG_PORT is in use: trying $port"
        SECURE_PG_PORT=$port
        echo "port = $port" | as_postgres tee -a "$SECURE_PG_DIR/data/postgresql.conf" >/dev/null
    done
    SECURE_PG_PID=$(head -n 1 "$SECURE_PG_DIR/data/postmaster.pid")
    # The password goes in on stdin (psql's variable, quoted by psql), never on a command line.
    cat >"$SECURE_PG_DIR/roles.sql" <<'SQL'
\set password `cat`
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"user";
SQL
    chmod 644 "$SECURE_PG_DIR/roles.sql"
    printf '%s\n' "$password" | secure_pg_admin -v user="$user" -v db="$db" -f "$SECURE_PG_DIR/roles.sql" >/dev/null ||
        fail "creating the role and database in the test's Postgres"
}

# secure_pg_admin ARGS...: psql as the superuser, over the unix socket.
secure_pg_admin() {
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$SECURE_PG_DIR/run" -p "${SECURE_PG_PORT}" -U postgres -d postgres "$@"
}

# stop_secure_pg: stops the test's Postgres, if it runs, and waits until it has gone. By its
# pid as well: pass() deletes the work folder, the data directory with it, before the EXIT trap
# runs, and pg_ctl then has nothing to go by.
stop_secure_pg() {
    if [[ -n "$SECURE_PG_DIR" && -f "$SECURE_PG_DIR/data/postmaster.pid" ]]; then
        as_postgres "${AP_PG_BIN:-/usr/lib/postgresql/15/bin}/pg_ctl" -D "$SECURE_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 && SECURE_PG_PID=""
    fi
    [[ -n "${SECURE_PG_PID:-}" ]] || return 0
    kill -QUIT "$SECURE_PG_PID" 2>/dev/null || return 0   # SIGQUIT: an immediate shutdown
    local deadline=$((SECONDS + 30))
    while kill -0 "$SECURE_PG_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
}

# secure_url USER PASSWORD PORT DB [CA]: a verify-full connection string.
secure_url() {
    echo "postgresql://$1:$2@127.0.0.1:$3/$4?sslmode=verify-full&sslrootcert=${5:-$CA_FILE}"
}

# readyz_reason SERVICE WORDS LOG PID: the processor PID writing LOG answers /readyz with 503
# and a reason for SERVICE that contains WORDS (fails the test when the processor exited).
readyz_reason() {
    local body code
    kill -0 "$4" 2>/dev/null || fail "the processor exited: $(tail -n 5 "$3")"
    grep -q 'listening on' "$3" || return 1
    body=$(curl -s -w '\n%{http_code}' "$(http_base "$3")/readyz" 2>/dev/null) || return 1
    code=${body##*$'\n'}
    body=${body%$'\n'*}
    [[ "$code" == 503 ]] || return 1
    jq -e --arg s "$1" --arg w "$2" '.reasons[$s] // "" | contains($w)' <<<"$body" >/dev/null
}
