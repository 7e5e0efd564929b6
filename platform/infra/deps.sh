#!/usr/bin/env bash
# Test infrastructure for Herald: a real single-node Kafka 4.x (KRaft, broker
# and controller in one JVM, jars from Maven Central) and a real Redis, both on
# loopback ports, data and logs under <repo>/.deps (git-ignored).
#
#   platform/infra/deps.sh up       start both (reusing instances already up)
#   platform/infra/deps.sh down     stop the ones this script started
#   platform/infra/deps.sh status   show what is running
#   platform/infra/deps.sh kafka-restart   stop and start the broker (e2e faults)
#
# Works unattended (CI=true, no stdin, root): installs redis-server and kcat
# (and python3-hl7, whose mllp_send the intake tests use) with apt-get when
# they are missing. Needs Java 17+ and Maven for Kafka.
# See platform/infra/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
INFRA="$ROOT/platform/infra"
# Overrides exist to try another Kafka version beside the running one, e.g.
#   HERALD_DEPS_DIR=/tmp/k44 HERALD_KAFKA_VERSION=4.4.0 HERALD_KAFKA_PORT=29092 \
#   HERALD_KAFKA_CONTROLLER_PORT=29093 platform/infra/deps.sh up
DEPS="${HERALD_DEPS_DIR:-$ROOT/.deps}"

KAFKA_HOST=127.0.0.1
KAFKA_PORT="${HERALD_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${HERALD_KAFKA_CONTROLLER_PORT:-19093}"
REDIS_HOST=127.0.0.1
REDIS_PORT="${HERALD_REDIS_PORT:-16379}"
KAFKA_WAIT_SECONDS="${HERALD_KAFKA_WAIT_SECONDS:-120}"
# Fixed KRaft cluster id (22 chars, base64url of 16 bytes): formatting needs
# no extra JVM start to generate one.
KAFKA_CLUSTER_ID=97i2HYxVTVaiyo__KrIj5g
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"

KAFKA_POM="$INFRA/kafka/pom.xml"
KAFKA_VERSION="${HERALD_KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM")}"
KAFKA_LIB="$INFRA/kafka/lib/$KAFKA_VERSION" # git-ignored
KAFKA_HOME="$DEPS/kafka"
KAFKA_DATA="$KAFKA_HOME/data"
KAFKA_LOGS="$KAFKA_HOME/logs"
KAFKA_PID="$KAFKA_HOME/kafka.pid"
REDIS_HOME="$DEPS/redis"
REDIS_PID="$REDIS_HOME/redis.pid"
REDIS_LOG="$REDIS_HOME/redis.log"

log() { printf 'deps: %s\n' "$*" >&2; }
die() {
	printf 'deps: ERROR: %s\n' "$*" >&2
	exit 1
}

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() {
	timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# pid_alive FILE [PATTERN]: true when FILE names a running process (whose
# command line contains PATTERN: a stale pid file never names a stranger).
pid_alive() {
	[[ -s "$1" ]] || return 1
	local pid
	pid="$(cat "$1")"
	kill -0 "$pid" 2>/dev/null || return 1
	[[ -z "${2:-}" ]] || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo -n "$@"
	else
		die "need root to run: $*"
	fi
}

apt_updated=0
apt_install() {
	command -v apt-get >/dev/null || die "cannot install $*: no apt-get; install it by hand"
	if [[ $apt_updated -eq 0 ]]; then
		log "apt-get update"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
		apt_updated=1
	fi
	log "apt-get install $*"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null >/dev/null
}

need_tools() {
	local missing=()
	command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server redis-tools)
	command -v kcat >/dev/null || missing+=(kcat)
	# python3-hl7's mllp_send is the independent HL7 client the intake tests use.
	command -v mllp_send >/dev/null || missing+=(python3-hl7)
	if [[ ${#missing[@]} -gt 0 ]]; then
		apt_install "${missing[@]}"
	fi
	command -v java >/dev/null || die "java (17 or newer) is needed for Kafka"
	local v
	v="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
	[[ -n "$v" && "$v" -ge 17 ]] || die "Kafka 4 needs Java 17 or newer; found: $(java -version 2>&1 | head -1)"
}

# ---------------------------------------------------------------- Redis

redis_ping() {
	[[ "$(timeout 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

redis_up() {
	if redis_ping; then
		local dbs
		dbs="$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" config get databases 2>/dev/null | tail -1)"
		log "redis: reusing the instance on $REDIS_HOST:$REDIS_PORT (databases=$dbs)"
		[[ "$dbs" -ge 2 ]] 2>/dev/null || die "redis on $REDIS_HOST:$REDIS_PORT has databases=$dbs; tests need --databases 256: stop it and run deps.sh up"
		return
	fi
	if port_open "$REDIS_HOST" "$REDIS_PORT"; then
		die "port $REDIS_HOST:$REDIS_PORT is taken by something that does not answer Redis PING"
	fi
	mkdir -p "$REDIS_HOME"
	rm -f "$REDIS_PID"
	log "redis: starting on $REDIS_HOST:$REDIS_PORT"
	redis-server --port "$REDIS_PORT" --bind "$REDIS_HOST" --save '' --appendonly no \
		--databases 256 --daemonize yes --pidfile "$REDIS_PID" \
		--dir "$REDIS_HOME" --logfile "$REDIS_LOG" </dev/null 9>&-
	local i
	for ((i = 0; i < 100; i++)); do
		redis_ping && {
			log "redis: ready"
			return
		}
		sleep 0.1
	done
	tail -n 30 "$REDIS_LOG" >&2 || true
	die "redis did not answer PING on $REDIS_HOST:$REDIS_PORT within 10s (log: $REDIS_LOG)"
}

redis_down() {
	if pid_alive "$REDIS_PID" redis-server; then
		local pid
		pid="$(cat "$REDIS_PID")"
		log "redis: stopping pid $pid"
		redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
		wait_exit "$pid" 20 redis
	elif redis_ping; then
		log "redis: $REDIS_HOST:$REDIS_PORT was not started by deps.sh (no pid file); leaving it running"
	else
		log "redis: not running"
	fi
	rm -f "$REDIS_PID"
}

# ---------------------------------------------------------------- Kafka

kafka_ready() {
	# A metadata round trip that lists our broker: it is registered with the
	# controller and serves requests (not just an open port).
	port_open "$KAFKA_HOST" "$KAFKA_PORT" || return 1
	timeout 10 kcat -b "$KAFKA_HOST:$KAFKA_PORT" -L -m 5 2>/dev/null | grep -q "broker 1 at $KAFKA_HOST:$KAFKA_PORT"
}

kafka_jars() {
	local stamp want
	stamp="$KAFKA_LIB/.pom.sha256"
	want="$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)"
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && compgen -G "$KAFKA_LIB/kafka_2.13-*.jar" >/dev/null; then
		return
	fi
	command -v mvn >/dev/null || die "maven (mvn) is needed to fetch the Kafka jars"
	log "kafka: fetching Kafka $KAFKA_VERSION jars with Maven into $KAFKA_LIB"
	rm -rf "$KAFKA_LIB"
	mkdir -p "$KAFKA_LIB"
	mkdir -p "$KAFKA_LOGS"
	if ! mvn -q -B --no-transfer-progress -Dstyle.color=never -f "$KAFKA_POM" -Dkafka.version="$KAFKA_VERSION" \
		dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIB" \
		</dev/null >"$KAFKA_LOGS/maven.log" 2>&1; then
		tail -n 40 "$KAFKA_LOGS/maven.log" >&2
		die "maven could not fetch the Kafka $KAFKA_VERSION jars (pom: $KAFKA_POM, log: $KAFKA_LOGS/maven.log)"
	fi
	echo "$want" >"$stamp"
}

kafka_config() {
	mkdir -p "$KAFKA_LOGS"
	cat >"$KAFKA_HOME/server.properties" <<EOF
# Written by platform/infra/deps.sh: single node, broker + controller (KRaft).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
# Two cores: fewer threads switch less (measured: broker CPU per alert
# 0.86-1.04 ms with 2 network and 4 I/O threads, 0.80 ms with 1 and 2).
num.network.threads=1
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.retention.hours=48
log.segment.bytes=67108864
EOF
	cat >"$KAFKA_HOME/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by platform/infra/deps.sh: Kafka logs to a file, not the console. -->
<Configuration status="warn">
  <Appenders>
    <RollingFile name="file" fileName="$KAFKA_LOGS/server.log" filePattern="$KAFKA_LOGS/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="50 MB"/>
      <DefaultRolloverStrategy max="2"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="state.change.logger" level="warn"/>
    <Logger name="org.apache.kafka.storage.internals.log" level="warn"/>
    <Logger name="kafka.log" level="warn"/>
  </Loggers>
</Configuration>
EOF
}

# kafka_cmd ARGS...: fills the array KAFKA_CMD with the java command line.
kafka_cmd() {
	# shellcheck disable=SC2206 # KAFKA_HEAP_OPTS is a list of JVM flags.
	KAFKA_CMD=(java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
		-Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.xml" -Dkafka.logs.dir="$KAFKA_LOGS"
		-cp "$KAFKA_LIB/*" "$@")
}

kafka_format() {
	local version stamp
	version="$KAFKA_VERSION"
	stamp="$KAFKA_HOME/formatted-version"
	if [[ -f "$KAFKA_DATA/meta.properties" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
		return
	fi
	# Test data only: a new Kafka version starts from an empty log.
	rm -rf "$KAFKA_DATA"
	log "kafka: formatting $KAFKA_DATA (KRaft, cluster $KAFKA_CLUSTER_ID)"
	kafka_cmd kafka.tools.StorageTool format --ignore-formatted -t "$KAFKA_CLUSTER_ID" \
		-c "$KAFKA_HOME/server.properties"
	"${KAFKA_CMD[@]}" </dev/null >"$KAFKA_LOGS/format.log" 2>&1 9>&- || {
		cat "$KAFKA_LOGS/format.log" >&2
		die "kafka storage format failed (log: $KAFKA_LOGS/format.log)"
	}
	echo "$version" >"$stamp"
}

kafka_up() {
	if kafka_ready; then
		log "kafka: reusing the broker on $KAFKA_HOST:$KAFKA_PORT"
		return
	fi
	if pid_alive "$KAFKA_PID" "$KAFKA_HOME"; then
		log "kafka: pid $(cat "$KAFKA_PID") is running but not ready yet; waiting for it"
	else
		if port_open "$KAFKA_HOST" "$KAFKA_PORT" || port_open "$KAFKA_HOST" "$KAFKA_CONTROLLER_PORT"; then
			die "port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT on $KAFKA_HOST is taken by something that is not a working Kafka"
		fi
		kafka_jars
		kafka_config
		kafka_format
		log "kafka: starting Kafka $KAFKA_VERSION on $KAFKA_HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)"
		local start=$SECONDS
		rm -f "$KAFKA_PID"
		kafka_cmd kafka.Kafka "$KAFKA_HOME/server.properties"
		# A session of its own (outlives make and Ctrl-C); the pid file names the JVM.
		# 9>&-: the broker must not inherit (and so hold) the deps.lock.
		# shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner bash.
		setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$KAFKA_PID" "${KAFKA_CMD[@]}" \
			</dev/null >"$KAFKA_LOGS/stdout.log" 2>&1 9>&- &
		local i
		for ((i = 0; i < 50; i++)); do
			[[ -s "$KAFKA_PID" ]] && break
			sleep 0.1
		done
		_kafka_start=$start
	fi
	local deadline=$((SECONDS + KAFKA_WAIT_SECONDS))
	while ((SECONDS < deadline)); do
		if ! pid_alive "$KAFKA_PID" "$KAFKA_HOME"; then
			kafka_fail "kafka exited while starting"
		fi
		if kafka_ready; then
			log "kafka: ready after $((SECONDS - ${_kafka_start:-$SECONDS}))s (pid $(cat "$KAFKA_PID"), logs in $KAFKA_LOGS)"
			return
		fi
		sleep 1
	done
	kafka_fail "kafka did not serve metadata on $KAFKA_HOST:$KAFKA_PORT within ${KAFKA_WAIT_SECONDS}s"
}

kafka_fail() {
	{
		echo "---- $KAFKA_LOGS/stdout.log (tail)"
		tail -n 30 "$KAFKA_LOGS/stdout.log" 2>/dev/null || true
		echo "---- $KAFKA_LOGS/server.log (tail)"
		tail -n 40 "$KAFKA_LOGS/server.log" 2>/dev/null || true
	} >&2
	die "$1"
}

kafka_down() {
	if pid_alive "$KAFKA_PID" "$KAFKA_HOME"; then
		local pid
		pid="$(cat "$KAFKA_PID")"
		log "kafka: stopping pid $pid"
		kill "$pid" 2>/dev/null || true
		wait_exit "$pid" 60 kafka
	elif port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
		log "kafka: $KAFKA_HOST:$KAFKA_PORT was not started by deps.sh (no pid file); leaving it running"
	else
		log "kafka: not running"
	fi
	rm -f "$KAFKA_PID"
}

# wait_exit PID SECONDS NAME: wait for a process to exit, then SIGKILL it.
wait_exit() {
	local pid=$1 limit=$2 name=$3 i
	for ((i = 0; i < limit * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || {
			log "$name: stopped"
			return
		}
		sleep 0.1
	done
	log "$name: pid $pid still running after ${limit}s; killing it"
	kill -9 "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- main

write_env() {
	cat >"$DEPS/env" <<EOF
# Written by platform/infra/deps.sh: source it before running go test by hand.
export HERALD_TEST_KAFKA_BROKERS=$KAFKA_HOST:$KAFKA_PORT
export HERALD_TEST_REDIS_ADDR=$REDIS_HOST:$REDIS_PORT
EOF
}

status() {
	local rc=0
	if kafka_ready; then
		echo "kafka: up on $KAFKA_HOST:$KAFKA_PORT${KAFKA_PID:+ (pid $(cat "$KAFKA_PID" 2>/dev/null || echo '?'))}"
	else
		echo "kafka: down"
		rc=1
	fi
	if redis_ping; then
		echo "redis: up on $REDIS_HOST:$REDIS_PORT"
	else
		echo "redis: down"
		rc=1
	fi
	return $rc
}

main() {
	local cmd="${1:-}"
	mkdir -p "$DEPS"
	# One deps.sh at a time (several people and `make test` share the machine).
	exec 9>"$DEPS/deps.lock"
	flock -w 300 9 || die "another deps.sh holds $DEPS/deps.lock"
	case "$cmd" in
	up)
		need_tools
		redis_up
		kafka_up
		write_env
		;;
	down)
		kafka_down
		redis_down
		;;
	kafka-restart)
		# A broker restart under load, for the e2e fault suite.
		kafka_down
		kafka_up
		;;
	status) status ;;
	*)
		echo "usage: $0 up|down|kafka-restart|status" >&2
		exit 2
		;;
	esac
}

main "$@"
