#!/usr/bin/env bash
# Local brokers for the distributed suite: Apache Kafka (KRaft, single
# node), nats-server with JetStream, redis-server. All on 127.0.0.1 with
# non-default ports, data under a temporary directory.
#
#   scripts/brokers.sh up [kafka|nats|redis ...]    install what is missing, start, wait
#   scripts/brokers.sh down [NAME ...]              stop what this script started
#   scripts/brokers.sh status                       one line per broker
#   scripts/brokers.sh kill NAME                    SIGKILL one broker (fault tests)
#   scripts/brokers.sh env                          the URLs, as shell assignments
#
# Downloads (Kafka's jars from Maven Central) are cached under
# $CARGO_TARGET_DIR or target/, in brokers/; pid files live in
# brokers/run/. `down` stops only processes whose pid file this script
# wrote. Every wait is bounded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CHRONICA_BROKERS_CACHE:-$ROOT/target/brokers}"
RUN="$CACHE/run"
KAFKA_VERSION="${KAFKA_VERSION:-3.9.1}"
KAFKA_PORT="${CHRONICA_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${CHRONICA_KAFKA_CONTROLLER_PORT:-19093}"
NATS_PORT="${CHRONICA_NATS_PORT:-14222}"
NATS_MONITOR_PORT="${CHRONICA_NATS_MONITOR_PORT:-18222}"
REDIS_PORT="${CHRONICA_REDIS_PORT:-16379}"
WAIT_SECONDS="${CHRONICA_BROKERS_WAIT:-90}"
ALL=(kafka nats redis)

log() { echo "brokers: $*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$RUN"

data_dir() {
    # One temporary data directory per `up`, remembered until `down`.
    if [[ ! -s "$RUN/datadir" || ! -d "$(cat "$RUN/datadir")" ]]; then
        mktemp -d "${TMPDIR:-/tmp}/chronica-brokers.XXXXXX" >"$RUN/datadir"
    fi
    cat "$RUN/datadir"
}

alive() { # NAME -> 0 if our pid file names a live process
    local pidfile="$RUN/$1.pid"
    [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_until() { # DESCRIPTION NAME COMMAND... ; bounded by WAIT_SECONDS
    local what="$1" name="$2"
    shift 2
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$@" >/dev/null 2>&1; do
        alive "$name" || die "$what exited while starting; see $RUN/$name.log"
        ((SECONDS < deadline)) || die "$what did not answer within ${WAIT_SECONDS}s; see $RUN/$name.log"
        sleep 0.3
    done
}

apt_install() { # PACKAGE... (without starting their system services)
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
    log "installing ${missing[*]} (apt-get)"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && own_policy=1
    fi
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        >"$RUN/apt.log" 2>&1 || { ((own_policy)) && $sudo rm -f "$policy"; die "apt-get failed; see $RUN/apt.log"; }
    if ((own_policy)); then $sudo rm -f "$policy"; fi
}

# ---------------------------------------------------------------- kafka
kafka_libs() { echo "$CACHE/kafka-$KAFKA_VERSION/libs"; }

kafka_install() {
    local libs
    libs="$(kafka_libs)"
    [[ -f "$libs/.complete" ]] && return 0
    command -v java >/dev/null || apt_install default-jre-headless
    command -v mvn >/dev/null || apt_install maven
    log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central"
    local work="$CACHE/kafka-$KAFKA_VERSION/pom"
    mkdir -p "$work" "$libs"
    cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>chronica.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
EOF
    (cd "$work" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs") \
        >"$RUN/mvn.log" 2>&1 || die "Maven could not fetch Kafka's jars; see $RUN/mvn.log"
    touch "$libs/.complete"
}

kafka_java() { # [--exec] MAINCLASS ARGS...  (--exec: the subshell becomes java, so $! is its pid)
    local libs exec_=""
    libs="$(kafka_libs)"
    if [[ $1 == --exec ]]; then exec_=exec; shift; fi
    $exec_ java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$CACHE/kafka-$KAFKA_VERSION/log4j.properties" \
        -cp "$libs/*" "$@"
}

kafka_up() {
    kafka_install
    local dir
    dir="$(data_dir)/kafka"
    mkdir -p "$dir"
    cat >"$CACHE/kafka-$KAFKA_VERSION/log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/logs
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=2
EOF
    if [[ ! -f "$dir/logs/meta.properties" ]]; then
        local id
        id="$(python3 -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
        kafka_java kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" >"$RUN/kafka-format.log" 2>&1 ||
            die "formatting Kafka's storage failed; see $RUN/kafka-format.log"
    fi
    kafka_java --exec kafka.Kafka "$dir/server.properties" >"$RUN/kafka.log" 2>&1 &
    echo $! >"$RUN/kafka.pid"
    wait_until "Kafka" kafka grep -q "Kafka Server started" "$RUN/kafka.log"
    wait_until "Kafka" kafka port_open "$KAFKA_PORT"
}

# ----------------------------------------------------------------- nats
nats_up() {
    command -v nats-server >/dev/null || apt_install nats-server
    local dir
    dir="$(data_dir)/nats"
    mkdir -p "$dir"
    nats-server -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" -js -sd "$dir" >"$RUN/nats.log" 2>&1 &
    echo $! >"$RUN/nats.pid"
    wait_until "nats-server" nats curl -fsS "http://127.0.0.1:$NATS_MONITOR_PORT/healthz?js-enabled-only=true"
}

# ---------------------------------------------------------------- redis
redis_up() {
    command -v redis-server >/dev/null || apt_install redis-server
    local dir
    dir="$(data_dir)/redis"
    mkdir -p "$dir"
    # appendfsync no still writes the AOF before every reply; everysec may
    # hold the write back up to 2 s and reply anyway, so a SIGKILL (the fault
    # tests send one) lost acknowledged entries. docs/DISTRIBUTED.md, Adapters.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir" --save "" --appendonly yes \
        --appendfsync no --daemonize no >"$RUN/redis.log" 2>&1 &
    echo $! >"$RUN/redis.pid"
    wait_until "redis-server" redis redis-cli -p "$REDIS_PORT" ping
}

# --------------------------------------------------------------- verbs
up() {
    for b in "$@"; do
        if alive "$b"; then
            log "$b already running (pid $(cat "$RUN/$b.pid"))"
            continue
        fi
        local t=$SECONDS
        "${b}_up"
        log "$b up in $((SECONDS - t))s (pid $(cat "$RUN/$b.pid"))"
    done
}

stop() { # NAME SIGNAL
    local pidfile="$RUN/$1.pid"
    [[ -s "$pidfile" ]] || return 0
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "-$2" "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$pidfile"
}

down() {
    for b in "$@"; do stop "$b" TERM; done
    local any=0
    for b in "${ALL[@]}"; do [[ -s "$RUN/$b.pid" ]] && any=1; done
    if ((!any)) && [[ -s "$RUN/datadir" ]]; then
        rm -rf "$(cat "$RUN/datadir")" "$RUN/datadir"
    fi
}

status() {
    for b in "${ALL[@]}"; do
        if alive "$b"; then echo "$b: running (pid $(cat "$RUN/$b.pid"))"; else echo "$b: stopped"; fi
    done
}

env_out() {
    echo "CHRONICA_KAFKA_URL=kafka://127.0.0.1:$KAFKA_PORT"
    echo "CHRONICA_NATS_URL=nats://127.0.0.1:$NATS_PORT"
    echo "CHRONICA_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
}

names() { # validate; default to all
    if (($# == 0)); then echo "${ALL[@]}"; return; fi
    for b in "$@"; do
        case "$b" in kafka | nats | redis) ;; *) die "unknown broker '$b' (kafka, nats, redis)" ;; esac
    done
    echo "$@"
}

verb="${1:-}"
shift || true
case "$verb" in
up) read -ra list <<<"$(names "$@")"; up "${list[@]}" ;;
down) read -ra list <<<"$(names "$@")"; down "${list[@]}" ;;
status) status ;;
kill) (($# == 1)) || die "usage: brokers.sh kill NAME"; names "$1" >/dev/null; stop "$1" KILL ;;
env) env_out ;;
*) die "usage: brokers.sh up|down|status|kill|env [kafka|nats|redis ...]" ;;
esac
