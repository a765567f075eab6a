#!/usr/bin/env bash
# Usage: deploy/local/services.sh start|stop|restart|status [pg|kafka|registry ...] | kill pg|kafka | env | scram-user NAME
#
# Runs the services that development and tests need, for this checkout only, on loopback:
#   pg     PostgreSQL 15, a private cluster (trust auth, user postgres) on 127.0.0.1:$AP_PG_PORT
#          (55432), with databases $AP_DATABASE (`allocation`) and `allocation_test`;
#   kafka  Apache Kafka 3.9.1, one KRaft broker+controller, PLAINTEXT on 127.0.0.1:$AP_KAFKA_PORT
#          (9092), controller on 127.0.0.1:$AP_KAFKA_CONTROLLER_PORT (9093). It runs in a podman
#          container (image from deploy/container/kafka, built on first use; --network host)
#          where podman works, else as a host process: AP_KAFKA_RUNTIME=container|process|auto
#          (default auto) chooses. `start` and `status` say which broker runs. A second listener,
#          SASL_SSL with SCRAM-SHA-512, on 127.0.0.1:$AP_KAFKA_SECURE_PORT (AP_KAFKA_PORT + 2) has
#          a certificate from the test authority in .local/tls (deploy/local/tls.sh; clients trust
#          .local/tls/ca.pem); `scram-user NAME` makes (or resets) a SCRAM-SHA-512 user whose
#          password it reads from stdin, with Kafka's own ConfigCommand.
#   registry  Apicurio Registry 2.4.2 (in-memory storage, default rule BACKWARD), a real schema
#          registry whose /apis/ccompat/v7 speaks the Confluent protocol, on
#          127.0.0.1:$AP_REGISTRY_PORT (Kafka's port + 3: 9095); a JVM on the host, built by
#          deps.sh (deploy/local/apicurio/). The tests need it; deploy/local/run does not start it.
# With no service named, all three.
# State and logs are in .local/ (gitignored). `start` reuses a service that already runs; `status`
# exits 0 only when every named service runs and answers. `kill kafka` sends the broker SIGKILL
# and `kill pg` stops Postgres in immediate mode (crashes, for tests; `start` brings either back,
# Postgres after crash recovery). `env` prints the variables to connect:
#   eval "$(deploy/local/services.sh env)"
# Kafka's jars come from deploy/local/deps.sh. The broker logs each of its GC pauses with the
# wall-clock time it ended to gc.log beside server.log (.local/kafka-container/ or .local/kafka/);
# tests/bench/run_bench.sh lines them up with its commands. AP_KAFKA_JVM_OPTS adds options to
# the broker's JVM (either runtime; the last of a repeated option wins), to try a setting, e.g.
#   AP_KAFKA_JVM_OPTS='-XX:MaxGCPauseMillis=20' deploy/local/services.sh restart kafka
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$AP_ROOT/deploy/container/lib.sh"

usage() { sed -n 2p "$0" | sed 's/^# //' >&2; exit 2; }

PG_DATABASES=("$AP_DATABASE" allocation_test)
KAFKA_DIR="$AP_LOCAL_DIR/kafka"                 # the host-process broker's state
KAFKA_PID_FILE="$KAFKA_DIR/kafka.pid"
KAFKA_LOG="$KAFKA_DIR/server.log"
KAFKA_CT_DIR="$AP_LOCAL_DIR/kafka-container"     # the container's volume: data/, server.log
KAFKA_CT_LOG="$KAFKA_CT_DIR/server.log"
KAFKA_CT_BUILD_LOG="$AP_LOCAL_DIR/kafka-image-build.log"
# One container per checkout and port, so checkouts side by side never touch each other's.
KAFKA_CONTAINER="allocation-kafka-$AP_KAFKA_PORT-$(printf %s "$AP_ROOT" | sha256sum | cut -c1-8)"
KAFKA_CT_UID=10002                               # the image's user (deploy/container/kafka)
STOP_TIMEOUT=60

# --- helpers ------------------------------------------------------------------------------------

# Prints the listener on a TCP port with its process, empty when the port is free.
port_owner() {
    ss -Hltnp "( sport = :$1 )" 2>/dev/null || true
}

# Fails with a readable message when something else listens on a port we are about to bind.
require_free_port() {
    local port=$1 what=$2 owner pid
    owner=$(port_owner "$port")
    [ -z "$owner" ] && return 0
    {
        echo "[deploy/local] error: port $port ($what) is already taken by another process:"
        echo "  $owner"
        pid=$(grep -o 'pid=[0-9]*' <<<"$owner" | head -n1 | cut -d= -f2 || true)
        if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ]; then
            echo "  command: $(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-300)"
        fi
        echo "  Stop it (another checkout: its deploy/local/services.sh stop), or choose other ports"
        echo "  with AP_PG_PORT / AP_KAFKA_PORT / AP_KAFKA_CONTROLLER_PORT."
    } >&2
    exit 1
}

# stop_pid PID NAME: SIGTERM (a clean shutdown), then KILL after STOP_TIMEOUT.
stop_pid() {
    local pid=$1 name=$2 deadline=$((SECONDS + STOP_TIMEOUT))
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            ap_log "$name: still running after ${STOP_TIMEOUT}s; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
}

tail_log() {
    local file=$1
    [ -f "$file" ] || return 0
    echo "----- last 30 lines of $file -----" >&2
    tail -n 30 "$file" >&2
    echo "-----" >&2
}

# --- PostgreSQL ---------------------------------------------------------------------------------
# Postgres refuses to run as root: as root, its commands run as the `postgres` OS user.

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Picks the cluster's folder once: .local/pg when the postgres user can reach it and the socket
# path fits the 107-byte limit of a unix socket; otherwise a folder under /tmp named after this
# checkout, with .local/pg as a symlink to it (e.g. a clone in root's private home).
pg_dir() {
    local dir="$AP_LOCAL_DIR/pg" alt
    alt="/tmp/allocation-processor-pg-$(printf %s "$AP_ROOT" | sha256sum | cut -c1-12)"
    if [ ! -L "$dir" ]; then
        mkdir -p "$dir"
        chmod o+x "$AP_LOCAL_DIR"
        pg_own "$dir"
        if as_pg test -w "$dir" && ((${#dir} + 24 < 107)); then
            echo "$dir"
            return
        fi
        ap_log "postgres cannot use $dir; keeping its cluster in $alt (.local/pg links there)"
        rmdir "$dir"
        ln -s "$alt" "$dir"
    fi
    mkdir -p "$alt"   # again after a reboot emptied /tmp
    chmod 755 "$alt"
    pg_own "$alt"
    echo "$alt"
}

pg_own() {
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$1"; fi
}

PG_DIR=""
pg_paths() {
    [ -n "$PG_DIR" ] && return
    mkdir -p "$AP_LOCAL_DIR"
    PG_DIR=$(pg_dir)
    PG_DATA="$PG_DIR/data"
    PG_LOG="$PG_DIR/log/postgresql.log"
    PG_SOCKET_DIR="$PG_DIR/run"
}

pg_answers() {
    "$AP_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$AP_PG_PORT" -U postgres -d postgres -t 2
}

pg_running() {
    pg_paths
    [ -f "$PG_DATA/postmaster.pid" ] && pg_data_is_ours && as_pg "$AP_PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

# True when the data folder is owned by the user postgres runs as, with a mode postgres accepts.
pg_data_is_ours() {
    as_pg test -O "$PG_DATA" || return 1
    case "$(stat -c %a "$PG_DATA")" in 700|750) return 0 ;; *) return 1 ;; esac
}

pg_init() {
    # initdb makes the folder 0700 and owned by postgres. Anything else was copied in (a clone of
    # a repository that tracked .local/, say): postgres refuses it, and a copy of a live cluster is
    # not safe to start anyway. Keep it aside and make a new cluster.
    if [ -f "$PG_DATA/PG_VERSION" ] && ! pg_data_is_ours; then
        local aside
        aside="$PG_DATA.foreign-$(date +%Y%m%d%H%M%S)"
        ap_log "postgres: $PG_DATA was not made by initdb here (owner/mode); moving it to $aside"
        mv "$PG_DATA" "$aside"
    fi
    [ -f "$PG_DATA/PG_VERSION" ] && return 0
    ap_log "postgres: creating a cluster in $PG_DATA"
    as_pg "$AP_PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
        || { tail_log "$PG_DIR/initdb.log"; ap_die "postgres: initdb failed"; }
    echo "include_if_exists = 'allocation_processor.conf'" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
}

# Rewritten at each start, so a changed AP_PG_PORT takes effect.
pg_write_conf() {
    mkdir -p "$PG_DIR/log" "$PG_SOCKET_DIR"
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$PG_DIR/log" "$PG_SOCKET_DIR"; fi
    as_pg tee "$PG_DATA/allocation_processor.conf" >/dev/null <<EOF
# Written by deploy/local/services.sh at each start; edits are lost.
listen_addresses = '127.0.0.1'
port = $AP_PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
max_connections = 100
shared_buffers = 128MB
synchronous_commit = on
EOF
}

pg_create_databases() {
    local db
    for db in "${PG_DATABASES[@]}"; do
        if [ -z "$(psql_admin -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
            psql_admin -qc "CREATE DATABASE \"$db\"" >/dev/null
            ap_log "postgres: created database $db"
        fi
    done
}

psql_admin() {
    PGCONNECT_TIMEOUT=5 psql -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$AP_PG_PORT" -U postgres -d postgres "$@"
}

pg_start() {
    pg_paths
    if pg_running; then
        ap_log "postgres: already running (data $PG_DATA)"
    else
        require_free_port "$AP_PG_PORT" "PostgreSQL"
        pg_init
        pg_write_conf
        ap_log "postgres: starting on 127.0.0.1:$AP_PG_PORT"
        # pg_ctl -w polls until the server accepts connections, and fails at once if it dies.
        as_pg "$AP_PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$AP_READY_TIMEOUT" start >/dev/null 9>&- \
            || { tail_log "$PG_LOG"; ap_die "postgres: did not start"; }
    fi
    local deadline=$((SECONDS + AP_READY_TIMEOUT))
    until pg_answers; do
        if ((SECONDS >= deadline)); then
            tail_log "$PG_LOG"
            ap_die "postgres: no answer on 127.0.0.1:$AP_PG_PORT after ${AP_READY_TIMEOUT}s (running on another port? try: $0 restart pg)"
        fi
        sleep 0.2
    done
    pg_create_databases
    ap_log "postgres: ready on 127.0.0.1:$AP_PG_PORT"
}

# pg_stop [immediate]: a fast shutdown; `immediate` is a crash instead (no checkpoint, no
# goodbye to clients; the next start runs crash recovery).
pg_stop() {
    local mode=${1:-fast}
    pg_paths
    if ! pg_running; then
        ap_log "postgres: not running"
        return 0
    fi
    ap_log "postgres: stopping ($mode mode)"
    as_pg "$AP_PG_BIN/pg_ctl" -D "$PG_DATA" -m "$mode" -w -t "$STOP_TIMEOUT" stop >/dev/null \
        || { tail_log "$PG_LOG"; ap_die "postgres: did not stop"; }
}

pg_kill() { pg_stop immediate; }

pg_status() {
    pg_paths
    if pg_running && pg_answers; then
        echo "pg: running, pid $(head -n1 "$PG_DATA/postmaster.pid"), 127.0.0.1:$AP_PG_PORT, data $PG_DATA"
    elif pg_running; then
        echo "pg: running but not answering on 127.0.0.1:$AP_PG_PORT (log $PG_LOG)"
        return 1
    else
        echo "pg: stopped"
        return 1
    fi
}

# --- Kafka --------------------------------------------------------------------------------------
# Two runtimes behind one set of verbs: a container (kafka_ct_*) or a host process (kafka_proc_*).
# Whichever runs is the one `status`, `stop` and `kill` act on, whatever AP_KAFKA_RUNTIME says;
# AP_KAFKA_RUNTIME only chooses the runtime of a broker `start` has to launch.

kafka_pid() {
    local pid
    [ -f "$KAFKA_PID_FILE" ] || return 1
    pid=$(cat "$KAFKA_PID_FILE")
    # A pid file can outlive its process (reboot, kill -9) and the pid be reused: check the command.
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *" kafka.Kafka "* ]] || return 1
    echo "$pid"
}

# A metadata request that lists broker 1 means the broker has joined the quorum and serves clients.
kafka_answers() {
    local metadata
    metadata=$(kcat -b "127.0.0.1:$AP_KAFKA_PORT" -L -m 2 2>/dev/null) || return 1
    [[ "$metadata" == *"broker 1 at"* ]]
}

# -Dap.checkout tags the process with its checkout, for `ps` and port-conflict messages.
KAFKA_JAVA_OPTS=(-Xms256m -Xmx512m -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
                 -Dap.checkout="$AP_ROOT")

# The secure listener's keystore, from the checkout's test authority, into the broker's folder
# (the container sees only its volume).
kafka_tls() {
    bash "$AP_ROOT/deploy/local/tls.sh" "$AP_TLS_DIR" || ap_die "kafka: making the test certificates failed"
    mkdir -p "$1/tls"
    cp "$AP_TLS_DIR/server-keystore.pem" "$1/tls/server-keystore.pem"
}

kafka_write_conf() {
    mkdir -p "$KAFKA_DIR/data"
    kafka_tls "$KAFKA_DIR"
    sed -e "s|@PORT@|$AP_KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$AP_KAFKA_CONTROLLER_PORT|g" \
        -e "s|@DATA_DIR@|$KAFKA_DIR/data|g" -e "s|@TLS_DIR@|$KAFKA_DIR/tls|g" \
        -e "s|@SECURE_LISTENER@|,SASL_SSL://127.0.0.1:$AP_KAFKA_SECURE_PORT|g" \
        "$AP_ROOT/deploy/container/kafka/server.properties.in" >"$KAFKA_DIR/server.properties"
    cat >"$KAFKA_DIR/log4j.properties" <<EOF
# Written by deploy/local/services.sh at each start; edits are lost.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$KAFKA_LOG
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
# Quieter than the defaults: per-request and per-segment chatter is of no use here.
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.storage.internals.log=WARN
EOF
    # The storage tool prints its result on stdout; its own logging goes to stderr, warnings only.
    cat >"$KAFKA_DIR/tools-log4j.properties" <<EOF
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

kafka_storage_tool() {
    java "${KAFKA_JAVA_OPTS[@]}" -Dlog4j.configuration="file:$KAFKA_DIR/tools-log4j.properties" \
        -cp "$AP_KAFKA_LIBS/*" kafka.tools.StorageTool "$@"
}

# KRaft needs its log folder formatted once with a cluster id. Skipped when already formatted: each
# storage-tool call is a JVM start (~1.5 s); --ignore-formatted covers a half-formatted folder.
kafka_format() {
    [ -f "$KAFKA_DIR/data/meta.properties" ] && return 0
    if [ ! -s "$KAFKA_DIR/cluster.id" ]; then
        kafka_storage_tool random-uuid >"$KAFKA_DIR/cluster.id.tmp"
        mv "$KAFKA_DIR/cluster.id.tmp" "$KAFKA_DIR/cluster.id"
    fi
    ap_log "kafka: formatting $KAFKA_DIR/data (cluster id $(cat "$KAFKA_DIR/cluster.id"))"
    kafka_storage_tool format -t "$(cat "$KAFKA_DIR/cluster.id")" \
        -c "$KAFKA_DIR/server.properties" --ignore-formatted >"$KAFKA_DIR/format.log" 2>&1 \
        || { tail_log "$KAFKA_DIR/format.log"; ap_die "kafka: storage format failed"; }
}

# The runtime a new broker gets.
kafka_runtime() {
    case "$AP_KAFKA_RUNTIME" in
        container)
            ap_podman_works || ap_die "kafka: AP_KAFKA_RUNTIME=container, but podman does not work here (podman info fails)"
            echo container ;;
        process) echo process ;;
        auto) if ap_podman_works; then echo container; else echo process; fi ;;
        *) ap_die "AP_KAFKA_RUNTIME must be container, process or auto, not '$AP_KAFKA_RUNTIME'" ;;
    esac
}

# The container's state (running, exited, ...), or "none".
kafka_ct_state() {
    command -v podman >/dev/null || { echo none; return; }
    podman container inspect --format '{{.State.Status}}' "$KAFKA_CONTAINER" 2>/dev/null || echo none
}

# Which broker runs: container, process or none.
kafka_which() {
    if [ "$(kafka_ct_state)" = running ]; then
        echo container
    elif kafka_pid >/dev/null; then
        echo process
    else
        echo none
    fi
}

kafka_running() { [ "$(kafka_which)" != none ]; }

# One line naming the running broker, for logs and status: which runtime, and what exactly.
kafka_describe() {
    case "$(kafka_which)" in
        container) echo "container $KAFKA_CONTAINER (image $(podman container inspect --format '{{.ImageName}}' "$KAFKA_CONTAINER" 2>/dev/null))" ;;
        process)   echo "host process (pid $(kafka_pid))" ;;
        none)      echo "none" ;;
    esac
}

kafka_proc_start() {
    ap_kafka_libs_ready || ap_die "kafka: jars missing in $AP_KAFKA_LIBS; run deploy/local/deps.sh"
    kafka_write_conf
    kafka_format
    ap_log "kafka: starting a host process on 127.0.0.1:$AP_KAFKA_PORT (log $KAFKA_LOG)"
    # setsid: its own session, so a Ctrl-C in the caller's terminal does not reach it.
    # shellcheck disable=SC2086  # AP_KAFKA_JVM_OPTS is a list of options
    nohup setsid java "${KAFKA_JAVA_OPTS[@]}" "-Xlog:gc:file=\"$KAFKA_DIR/gc.log\":timemillis:filecount=2,filesize=20m" \
        ${AP_KAFKA_JVM_OPTS:-} -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
        -cp "$AP_KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
        >>"$KAFKA_DIR/stdout.log" 2>&1 </dev/null 9>&- &
    echo $! >"$KAFKA_PID_FILE"
}

# The container is made anew at each start (its settings follow AP_KAFKA_*_PORT); the data and
# the log stay in its volume, .local/kafka-container, so topics survive a restart or a kill.
kafka_ct_start() {
    local image
    image=$(ap_kafka_image)
    if ! podman image exists "$image"; then
        ap_log "kafka: building the image $image (deploy/container/build.sh kafka; log $KAFKA_CT_BUILD_LOG)"
        AP_SKIP_DEPS=1 bash "$AP_ROOT/deploy/container/build.sh" kafka >"$KAFKA_CT_BUILD_LOG" 2>&1 9>&- \
            || { tail_log "$KAFKA_CT_BUILD_LOG"; ap_die "kafka: building the image failed"; }
    fi
    podman rm --force "$KAFKA_CONTAINER" >/dev/null 2>&1 || true   # a stopped or killed one
    mkdir -p "$KAFKA_CT_DIR"
    kafka_tls "$KAFKA_CT_DIR"
    local user_opts=()
    if [ "$(id -u)" -eq 0 ]; then
        chown -R "$KAFKA_CT_UID:$KAFKA_CT_UID" "$KAFKA_CT_DIR"
    else
        # Rootless podman: the broker runs as the caller, who owns the volume.
        user_opts=(--userns=keep-id --user "$(id -u):$(id -g)")
    fi
    ap_log "kafka: starting container $KAFKA_CONTAINER (image $image) on 127.0.0.1:$AP_KAFKA_PORT (log $KAFKA_CT_LOG)"
    # Detached: conmon watches it, so the fd 9 lock must not be passed on. -Dap.container names
    # the JVM (a host process too, with --network host) in another checkout's port-conflict error.
    podman run --detach --name "$KAFKA_CONTAINER" --network host "${user_opts[@]}" \
        --stop-timeout "$STOP_TIMEOUT" --label "ap.checkout=$AP_ROOT" \
        --env KAFKA_PORT="$AP_KAFKA_PORT" --env KAFKA_CONTROLLER_PORT="$AP_KAFKA_CONTROLLER_PORT" \
        --env KAFKA_SECURE_PORT="$AP_KAFKA_SECURE_PORT" \
        --env KAFKA_HEAP_OPTS="-Xms256m -Xmx512m" \
        --env KAFKA_OPTS="-Dap.container=$KAFKA_CONTAINER ${AP_KAFKA_JVM_OPTS:-}" \
        --volume "$KAFKA_CT_DIR:/var/lib/kafka" "$image" >/dev/null 9>&- \
        || ap_die "kafka: podman run failed"
}

kafka_start_logs() {
    if [ "$(kafka_ct_state)" != none ]; then
        tail_log "$KAFKA_CT_LOG"
        echo "----- podman logs --tail 30 $KAFKA_CONTAINER -----" >&2
        podman logs --tail 30 "$KAFKA_CONTAINER" >&2 2>&1 || true
    else
        tail_log "$KAFKA_LOG"
        tail_log "$KAFKA_DIR/stdout.log"
    fi
}

kafka_start() {
    local started_at=$SECONDS runtime
    if kafka_running; then
        ap_log "kafka: already running: $(kafka_describe)"
    else
        runtime=$(kafka_runtime)   # a separate assignment, so its ap_die stops the script
        require_free_port "$AP_KAFKA_PORT" "Kafka"
        require_free_port "$AP_KAFKA_CONTROLLER_PORT" "Kafka controller"
        require_free_port "$AP_KAFKA_SECURE_PORT" "Kafka SASL_SSL"
        case "$runtime" in
            container) kafka_ct_start ;;
            process)
                [ "$AP_KAFKA_RUNTIME" = process ] || ap_log "kafka: podman does not work here; falling back to a host process"
                kafka_proc_start ;;
        esac
    fi
    local deadline=$((SECONDS + AP_READY_TIMEOUT))
    until kafka_answers; do
        if ! kafka_running; then
            kafka_start_logs
            ap_die "kafka: the broker exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            kafka_start_logs
            ap_die "kafka: no answer on 127.0.0.1:$AP_KAFKA_PORT after ${AP_READY_TIMEOUT}s"
        fi
        sleep 0.5
    done
    ap_log "kafka: $(kafka_describe), ready on 127.0.0.1:$AP_KAFKA_PORT ($((SECONDS - started_at))s)"
}

kafka_proc_stop() {
    local pid
    pid=$(kafka_pid) || return 0
    ap_log "kafka: stopping the host process (pid $pid)"
    stop_pid "$pid" kafka
    rm -f "$KAFKA_PID_FILE"
}

# SIGTERM to the JVM (PID 1 in the container), a clean shutdown; KILL after STOP_TIMEOUT.
kafka_ct_stop() {
    local state
    state=$(kafka_ct_state)
    [ "$state" = none ] && return 0
    if [ "$state" = running ]; then
        ap_log "kafka: stopping container $KAFKA_CONTAINER"
        podman stop --time "$STOP_TIMEOUT" "$KAFKA_CONTAINER" >/dev/null \
            || ap_log "kafka: podman stop $KAFKA_CONTAINER failed"
    fi
    podman rm --force "$KAFKA_CONTAINER" >/dev/null 2>&1 || true
}

kafka_stop() {
    kafka_running || ap_log "kafka: not running"
    kafka_ct_stop
    kafka_proc_stop
    rm -f "$KAFKA_PID_FILE"
}

# A crash: SIGKILL, no shutdown at all. The container is kept (exited) until the next start.
kafka_kill() {
    case "$(kafka_which)" in
        container)
            ap_log "kafka: killing container $KAFKA_CONTAINER (SIGKILL)"
            podman kill --signal KILL "$KAFKA_CONTAINER" >/dev/null
            podman wait "$KAFKA_CONTAINER" >/dev/null 2>&1 || true ;;
        process)
            local pid
            pid=$(kafka_pid)
            ap_log "kafka: killing the host process (pid $pid, SIGKILL)"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
            rm -f "$KAFKA_PID_FILE" ;;
        none) ap_log "kafka: not running" ;;
    esac
}

kafka_status() {
    local which
    which=$(kafka_which)
    case "$which" in
        container) local data="$KAFKA_CT_DIR/data" log="$KAFKA_CT_LOG" ;;
        process) local data="$KAFKA_DIR/data" log="$KAFKA_LOG" ;;
        none) echo "kafka: stopped"; return 1 ;;
    esac
    if kafka_answers; then
        echo "kafka: running, $(kafka_describe), 127.0.0.1:$AP_KAFKA_PORT (SASL_SSL :$AP_KAFKA_SECURE_PORT, controller :$AP_KAFKA_CONTROLLER_PORT), data $data"
    else
        echo "kafka: running ($(kafka_describe)) but not answering on 127.0.0.1:$AP_KAFKA_PORT (log $log)"
        return 1
    fi
}

# A SCRAM-SHA-512 user for the secure listener, made (or its password reset) through the running
# broker by Kafka's ConfigCommand; the password comes on stdin and reaches the tool in a file,
# never on a command line. The broker stores only the salted hash, in its metadata log.
kafka_scram_user() {
    local name=$1 password file rc=0
    kafka_answers || ap_die "kafka: not running (start it first)"
    IFS= read -r password || [ -n "$password" ] || ap_die "scram-user: no password on stdin"
    file=$(mktemp "$AP_LOCAL_DIR/scram.XXXXXX")
    printf 'SCRAM-SHA-512=iterations=4096,password=%s\n' "$password" >"$file"
    java "${KAFKA_JAVA_OPTS[@]}" -Dlog4j.configuration="file:$AP_ROOT/deploy/container/kafka/tools-log4j.properties" \
        -cp "$AP_KAFKA_LIBS/*" kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$AP_KAFKA_PORT" \
        --alter --entity-type users --entity-name "$name" --add-config-file "$file" >/dev/null 9>&- || rc=$?
    rm -f "$file"
    ((rc == 0)) || ap_die "kafka: ConfigCommand could not make the SCRAM user $name"
    ap_log "kafka: SCRAM-SHA-512 user $name ready on the SASL_SSL listener 127.0.0.1:$AP_KAFKA_SECURE_PORT"
}

# --- the schema registry -----------------------------------------------------------------------

REGISTRY_DIR="$AP_LOCAL_DIR/registry"
REGISTRY_PID_FILE="$REGISTRY_DIR/registry.pid"
REGISTRY_LOG="$REGISTRY_DIR/registry.log"
REGISTRY_URL="http://127.0.0.1:$AP_REGISTRY_PORT/apis/ccompat/v7"
# A JVM on a machine shared with the tests: a small heap. Quarkus starts in seconds on an idle
# machine and in minutes on a loaded one, hence its own deadline.
REGISTRY_JAVA_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1)
REGISTRY_TIMEOUT=${AP_REGISTRY_TIMEOUT:-300}

# The registry's pid, when the one we started still runs.
registry_pid() {
    local pid
    [ -f "$REGISTRY_PID_FILE" ] && pid=$(cat "$REGISTRY_PID_FILE") && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$(basename "$AP_APICURIO_JAR")" \
        && echo "$pid"
}

registry_answers() {
    curl -fsS -m 5 -o /dev/null "$REGISTRY_URL/subjects" 2>/dev/null
}

registry_start() {
    local started_at=$SECONDS pid
    if pid=$(registry_pid); then
        ap_log "registry: already running (pid $pid)"
    else
        ap_apicurio_ready || ap_die "registry: Apicurio Registry is not built in $AP_APICURIO_HOME; run deploy/local/deps.sh --tests"
        require_free_port "$AP_REGISTRY_PORT" "schema registry"
        mkdir -p "$REGISTRY_DIR"
        ap_log "registry: starting Apicurio Registry $AP_APICURIO_VERSION on 127.0.0.1:$AP_REGISTRY_PORT (log $REGISTRY_LOG)"
        # In its own folder: it writes nothing there, but a JVM's crash files would land there.
        (cd "$REGISTRY_DIR" && exec nohup setsid java "${REGISTRY_JAVA_OPTS[@]}" \
            -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$AP_REGISTRY_PORT" \
            -Dregistry.rules.global.compatibility=BACKWARD -jar "$AP_APICURIO_JAR" \
            >>"$REGISTRY_LOG" 2>&1 </dev/null 9>&-) &
        echo $! >"$REGISTRY_PID_FILE"
    fi
    local deadline=$((SECONDS + REGISTRY_TIMEOUT))
    until registry_answers; do
        if ! registry_pid >/dev/null; then
            tail_log "$REGISTRY_LOG"
            ap_die "registry: Apicurio Registry exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            tail_log "$REGISTRY_LOG"
            ap_die "registry: no answer on $REGISTRY_URL after ${REGISTRY_TIMEOUT}s"
        fi
        sleep 1
    done
    ap_log "registry: ready on $REGISTRY_URL ($((SECONDS - started_at))s)"
}

registry_stop() {
    local pid
    if ! pid=$(registry_pid); then
        ap_log "registry: not running"
        rm -f "$REGISTRY_PID_FILE"
        return 0
    fi
    ap_log "registry: stopping (pid $pid)"
    stop_pid "$pid" registry
    rm -f "$REGISTRY_PID_FILE"
}

registry_status() {
    local pid
    if ! pid=$(registry_pid); then
        echo "registry: stopped"
        return 1
    fi
    if registry_answers; then
        echo "registry: running, pid $pid, $REGISTRY_URL"
    else
        echo "registry: running (pid $pid) but not answering on $REGISTRY_URL (log $REGISTRY_LOG)"
        return 1
    fi
}

# --- main ---------------------------------------------------------------------------------------

print_env() {
    echo "export DATABASE_URL=postgresql://postgres@127.0.0.1:$AP_PG_PORT/$AP_DATABASE"
    echo "export TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:$AP_PG_PORT/allocation_test"
    echo "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$AP_KAFKA_PORT"
    echo "export SECURE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$AP_KAFKA_SECURE_PORT"
    echo "export AP_TLS_DIR=$AP_TLS_DIR"
    echo "export TEST_SCHEMA_REGISTRY_URL=$REGISTRY_URL"
}

action=${1:-}
[ -n "$action" ] || usage
shift
if [ "$action" = scram-user ]; then
    [ $# -eq 1 ] || usage
    ap_kafka_libs_ready || ap_die "kafka: jars missing in $AP_KAFKA_LIBS; run deploy/local/deps.sh"
    kafka_scram_user "$1"
    exit 0
fi
services=("$@")
((${#services[@]})) || services=(pg kafka registry)
for svc in "${services[@]}"; do
    case "$svc" in pg|kafka|registry) ;; *) ap_log "unknown service '$svc' (pg, kafka or registry)"; usage ;; esac
done
if [ "$action" = kill ] && [ "${#services[@]}" != 1 ]; then
    ap_log "kill takes one service: pg or kafka"
    usage
fi

if [ "$action" = env ]; then
    print_env
    exit 0
fi

mkdir -p "$AP_LOCAL_DIR"
chmod 755 "$AP_LOCAL_DIR"
# One services.sh at a time per checkout changes state (two test runs starting at once). The
# services themselves must not inherit this descriptor: they would hold the lock forever.
if [ "$action" != status ]; then
    exec 9>"$AP_LOCAL_DIR/services.lock"
    flock -w 300 9 || ap_die "another deploy/local/services.sh holds $AP_LOCAL_DIR/services.lock"
fi

rc=0
case "$action" in
    start)   for svc in "${services[@]}"; do "${svc}_start"; done ;;
    stop)    # in reverse order of start
             for ((i = ${#services[@]} - 1; i >= 0; i--)); do "${services[i]}_stop"; done ;;
    restart) for svc in "${services[@]}"; do "${svc}_stop"; "${svc}_start"; done ;;
    status)  for svc in "${services[@]}"; do "${svc}_status" || rc=3; done ;;
    kill)    "${services[0]}_kill" ;;
    *)       usage ;;
esac
exit "$rc"
