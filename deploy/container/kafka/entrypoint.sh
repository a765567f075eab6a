#!/bin/sh
# Starts one KRaft node (broker and controller) on loopback: formats its storage the first time
# (a cluster id from KAFKA_CLUSTER_ID, or a new one), then runs kafka.Kafka as PID 1, so
# `podman stop` (SIGTERM) is a clean shutdown and `podman kill -s KILL` a crash.
#   KAFKA_PORT             PLAINTEXT listener on 127.0.0.1 (default 9092)
#   KAFKA_CONTROLLER_PORT  controller listener on 127.0.0.1 (default 9093)
#   KAFKA_SECURE_PORT      when set, a SASL_SSL (SCRAM-SHA-512) listener on 127.0.0.1 too; its
#                          PEM keystore is /var/lib/kafka/tls/server-keystore.pem
#   KAFKA_HEAP_OPTS        default -Xms256m -Xmx512m
#   KAFKA_CLUSTER_ID       used when the storage is not formatted yet
#   KAFKA_OPTS             more JVM options (services.sh tags the JVM with its container's name)
# Everything lives in /var/lib/kafka (a volume): data/, server.log, server.properties, and
# gc.log (every GC pause of the broker with its wall-clock end, which the benchmark lines up
# with its commands' latencies).
set -eu
port=${KAFKA_PORT:-9092}
ctl=${KAFKA_CONTROLLER_PORT:-9093}
home=/var/lib/kafka
conf=$home/server.properties
java_opts="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true ${KAFKA_OPTS:-}"
mkdir -p "$home/data"

# The settings deploy/local/services.sh gives a host-process broker too (one template).
secure=${KAFKA_SECURE_PORT:+,SASL_SSL://127.0.0.1:$KAFKA_SECURE_PORT}
sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$ctl|g" -e "s|@DATA_DIR@|$home/data|g" \
    -e "s|@SECURE_LISTENER@|$secure|g" -e "s|@TLS_DIR@|$home/tls|g" \
    /opt/kafka/config/server.properties.in >"$conf"

storage_tool() {
    # shellcheck disable=SC2086  # java_opts is a list of options
    java $java_opts -Dlog4j.configuration=file:/opt/kafka/config/tools-log4j.properties \
        -cp '/opt/kafka/libs/*' kafka.tools.StorageTool "$@"
}
if [ ! -f "$home/data/meta.properties" ]; then
    id=${KAFKA_CLUSTER_ID:-$(storage_tool random-uuid)}
    echo "entrypoint: formatting $home/data (cluster id $id)"
    storage_tool format -t "$id" -c "$conf" --ignore-formatted
fi
echo "entrypoint: starting Kafka on 127.0.0.1:$port${KAFKA_SECURE_PORT:+ (SASL_SSL :$KAFKA_SECURE_PORT)} (controller :$ctl); log $home/server.log"
# shellcheck disable=SC2086
exec java -Xlog:gc:file="$home/gc.log":timemillis:filecount=2,filesize=20m $java_opts \
    -Dkafka.logs.dir="$home" \
    -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties \
    -cp '/opt/kafka/libs/*' kafka.Kafka "$conf"
