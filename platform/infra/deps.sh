#!/usr/bin/env bash
# Test infrastructure for Herald: a real single-node Kafka 4.x (KRaft, broker
# and controller in one JVM, jars from Maven Central), a real Redis and
# Debian's PostgreSQL 15 (the console's reporting store), all on loopback
# ports, data and logs under <repo>/.deps (git-ignored). Beside the
# plaintext listeners: a SASL_SSL listener (SCRAM users, ACLs) on the broker and
# a second Redis with TLS and ACL users only, with a development CA.
#
#   platform/infra/deps.sh up       start both (reusing instances already up)
#   platform/infra/deps.sh down     stop the ones this script started
#   platform/infra/deps.sh status   show what is running
#   platform/infra/deps.sh postgres-url   print the test PostgreSQL URL
#   platform/infra/deps.sh kafka-restart   stop and start the broker (e2e faults)
#   platform/infra/deps.sh cluster-up      a three-broker KRaft cluster (e2e/chaos)
#   platform/infra/deps.sh cluster-kill N  SIGKILL broker N (1..3); cluster-start N
#                                           brings it back; cluster-restart N; cluster-down
#
# Works unattended (CI=true, no stdin, root): installs redis-server and kcat
# (and python3-hl7, whose mllp_send the intake tests use) with apt-get when
# they are missing, and postgresql when /usr/lib/postgresql/15 is. Needs Java
# 17+ and Maven for Kafka.
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
PG_HOST=127.0.0.1
PG_PORT="${HERALD_POSTGRES_PORT:-15432}"
# The secured listeners sit beside the plaintext ones (derived ports, so that
# worktrees and main do not collide): Kafka SASL_SSL on the broker port + 2,
# Redis with TLS and ACL users (a second redis-server) on the Redis port + 1.
KAFKA_SASL_PORT="${HERALD_KAFKA_SASL_PORT:-$((KAFKA_PORT + 2))}"
REDIS_TLS_PORT="${HERALD_REDIS_TLS_PORT:-$((REDIS_PORT + 1))}"
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
# Development CA, certificates and passwords of the secured listeners; the
# tests read them from here (platform/testinfra).
SECURE="$DEPS/secure"
TLS_DIR="$SECURE/tls"
SECRETS_DIR="$SECURE/secrets"
REDIS_PID="$REDIS_HOME/redis.pid"
REDIS_LOG="$REDIS_HOME/redis.log"
# PostgreSQL: Debian's server binaries (initdb, pg_ctl), a cluster of our own.
PG_BIN="${HERALD_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}"
PG_HOME="$DEPS/postgres"
PG_DATA="$PG_HOME/data"
PG_LOG="$PG_HOME/postgres.log"
PG_DB=herald_test
PG_USER=herald

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
	[[ -x "$PG_BIN/pg_ctl" ]] || missing+=(postgresql)
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

# ---------------------------------------------------------------- PostgreSQL
# One cluster (initdb once, trust authentication, loopback only), with the
# database herald_test owned by the role herald. PostgreSQL refuses to run as
# root: as root, the cluster belongs to the postgres system user.

pg_as() {
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pg_ready() {
	"$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1
}

pg_url() {
	echo "postgres://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB?sslmode=disable"
}

pg_init() {
	[[ -s "$PG_DATA/PG_VERSION" ]] && return
	log "postgres: initdb into $PG_DATA"
	mkdir -p "$PG_HOME"
	rm -rf "$PG_DATA"
	if [[ $(id -u) -eq 0 ]]; then
		id postgres >/dev/null 2>&1 || die "running as root needs the postgres system user (Debian's postgresql package makes it)"
		chown postgres: "$PG_HOME"
		# The postgres user must reach the folder through every parent.
		local d="$PG_HOME"
		while [[ "$d" != / ]]; do
			d="$(dirname "$d")"
			runuser -u postgres -- test -x "$d" || die "the postgres user cannot enter $d: chmod o+x it or set HERALD_DEPS_DIR"
		done
	fi
	pg_as "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
		>"$PG_HOME/initdb.log" 2>&1 </dev/null 9>&- || {
		cat "$PG_HOME/initdb.log" >&2
		die "postgres: initdb failed (log: $PG_HOME/initdb.log)"
	}
	# Loopback only, little memory (the machine is shared), no fsync: test data.
	pg_as tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF
# Written by platform/infra/deps.sh: test data only.
listen_addresses = '$PG_HOST'
unix_socket_directories = '$PG_HOME'
shared_buffers = 128MB
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

postgres_up() {
	if pg_ready; then
		log "postgres: reusing the instance on $PG_HOST:$PG_PORT"
	else
		if port_open "$PG_HOST" "$PG_PORT"; then
			die "port $PG_HOST:$PG_PORT is taken by something that is not PostgreSQL"
		fi
		pg_init
		log "postgres: starting on $PG_HOST:$PG_PORT"
		# 9>&-: the server must not inherit (and so hold) the deps.lock.
		pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
			-o "-p $PG_PORT" start </dev/null >/dev/null 9>&- || {
			tail -n 30 "$PG_LOG" >&2 || true
			die "postgres did not start on $PG_HOST:$PG_PORT (log: $PG_LOG)"
		}
		log "postgres: ready"
	fi
	# The role and database of the tests (once).
	local psql=("$PG_BIN/psql" -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1)
	if [[ "$("${psql[@]}" -c "select 1 from pg_roles where rolname='$PG_USER'")" != 1 ]]; then
		"${psql[@]}" -c "create role $PG_USER login createdb" >/dev/null
	fi
	if [[ "$("${psql[@]}" -c "select 1 from pg_database where datname='$PG_DB'")" != 1 ]]; then
		"${psql[@]}" -c "create database $PG_DB owner $PG_USER" >/dev/null
	fi
}

postgres_down() {
	if [[ -s "$PG_DATA/postmaster.pid" ]] && pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
		log "postgres: stopping"
		pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 9>&- || log "postgres: pg_ctl stop failed"
	elif pg_ready; then
		log "postgres: $PG_HOST:$PG_PORT was not started by deps.sh (not our data folder); leaving it running"
	else
		log "postgres: not running"
	fi
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
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT,SASL_SSL://$KAFKA_HOST:$KAFKA_SASL_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,SASL_SSL://$KAFKA_HOST:$KAFKA_SASL_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
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
	kafka_secure_config >>"$KAFKA_HOME/server.properties"
	write_log4j "$KAFKA_HOME/log4j2.xml" "$KAFKA_LOGS" "50 MB" ": Kafka logs to a file, not the console"
}

# write_log4j FILE LOGDIR SIZE WHAT: a log4j2 configuration that sends a
# broker's log to LOGDIR/server.log (rolled at SIZE), quiet request loggers.
write_log4j() {
	cat >"$1" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by platform/infra/deps.sh$4. -->
<Configuration status="warn">
  <Appenders>
    <RollingFile name="file" fileName="$2/server.log" filePattern="$2/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="$3"/>
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

# ---------------------------------------------------------------- secured listeners
# Kafka's SASL_SSL listener (SCRAM-SHA-512 over TLS, ACLs in StandardAuthorizer)
# and a second redis-server with TLS and ACL users only. The plaintext Kafka
# listener and Redis above stay as they are for the tests that do not exercise
# security. The principals are those of production (docs/deployment.md): one
# per service, an operator (heraldctl) and the harness's super user.

KAFKA_USERS=(herald-admin herald-intake herald-rules herald-notification herald-acknowledgement herald-operator herald-console)
REDIS_USERS=(herald-admin herald-intake herald-notification herald-acknowledgement)
REDIS_SECURE_HOME="$DEPS/redis-secure"
REDIS_SECURE_PID="$REDIS_SECURE_HOME/redis.pid"
REDIS_SECURE_LOG="$REDIS_SECURE_HOME/redis.log"
secure_changed=0

# secret_file FILE: a random password, written once.
secret_file() {
	[[ -s "$1" ]] && return
	(
		umask 077
		head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$1"
	)
}

tls_fingerprint() {
	{ cat "$TLS_DIR"/ca.crt "$TLS_DIR"/kafka.crt "$TLS_DIR"/redis.crt 2>/dev/null || true; } | sha256sum
}

# secure_material: the development CA and certificates (platform/devca; it
# keeps valid ones) and the passwords. Sets secure_changed=1 when the CA or a
# server certificate changed, so that running servers are restarted.
secure_material() {
	mkdir -p "$TLS_DIR" "$SECRETS_DIR"
	chmod 700 "$SECURE" "$SECRETS_DIR"
	command -v go >/dev/null || die "go is needed to write the development CA (platform/devca)"
	local before after
	before="$(tls_fingerprint)"
	(cd "$ROOT" && go run ./platform/devca/cmd/devca -dir "$TLS_DIR" kafka redis herald-test-client) ||
		die "platform/devca could not write the development certificates into $TLS_DIR"
	after="$(tls_fingerprint)"
	[[ "$before" == "$after" ]] || secure_changed=1
	# Kafka's PEM key store is the key and the chain in one file.
	(
		umask 077
		cat "$TLS_DIR/kafka.key" "$TLS_DIR/kafka.crt" >"$TLS_DIR/kafka-keystore.pem"
	)
	local u
	for u in "${KAFKA_USERS[@]}"; do secret_file "$SECRETS_DIR/kafka-$u.password"; done
	for u in "${REDIS_USERS[@]}"; do secret_file "$SECRETS_DIR/redis-$u.password"; done
}

# kafka_secure_config: the broker settings of the SASL_SSL listener, appended
# to server.properties by kafka_config. ANONYMOUS (the plaintext and
# controller listeners) is a super user, so those stay as open as before.
kafka_secure_config() {
	cat <<EOF
# SASL_SSL listener: SCRAM-SHA-512 over TLS, ACLs (deps.sh kafka_secure_config).
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/kafka-keystore.pem
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location=$TLS_DIR/ca.crt
listener.name.sasl_ssl.ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS;User:herald-admin
allow.everyone.if.no.acl.found=false
EOF
}

# kafka_restart_if_insecure: a broker of ours that runs without the SASL_SSL
# listener (started by an older deps.sh) or with a replaced certificate is
# stopped, so that kafka_up starts it with the current configuration.
kafka_restart_if_insecure() {
	kafka_ready || return 0
	if port_open "$KAFKA_HOST" "$KAFKA_SASL_PORT" && [[ $secure_changed -eq 0 ]]; then
		return 0
	fi
	if ! pid_alive "$KAFKA_PID" "$KAFKA_HOME"; then
		log "kafka: the broker on $KAFKA_HOST:$KAFKA_PORT has no SASL_SSL listener on $KAFKA_SASL_PORT and was not started by deps.sh; the security tests will fail"
		return 0
	fi
	log "kafka: restarting the broker to (re)load its SASL_SSL listener"
	kafka_down
}

# kafka_tool CLASS ARGS...: one of Kafka's own command-line tools (a small
# JVM that starts quickly: these run for a second or two).
kafka_tool() {
	local KAFKA_HEAP_OPTS="-Xmx256m -XX:TieredStopAtLevel=1"
	kafka_cmd "$@"
	"${KAFKA_CMD[@]}" </dev/null >>"$KAFKA_LOGS/tools.log" 2>&1 9>&- || {
		tail -n 20 "$KAFKA_LOGS/tools.log" >&2
		die "kafka tool $1 failed (log: $KAFKA_LOGS/tools.log)"
	}
}

# kafka_acl ARGS...: add ACLs (kafka-acls) with prefixed resource patterns, so
# that the production names and the tests' suffixed copies of them match.
kafka_acl() {
	kafka_tool org.apache.kafka.tools.AclCommand --bootstrap-server "$KAFKA_HOST:$KAFKA_PORT" \
		--add --force --resource-pattern-type prefixed "$@"
}

# kafka_secure_setup: SCRAM users (kafka-configs) and ACLs (kafka-acls), once
# per formatted log (they live in the cluster metadata) and password set.
kafka_secure_setup() {
	local stamp="$KAFKA_HOME/secure-setup" want u
	want="$(stat -c %i-%Y "$KAFKA_DATA/meta.properties")-$(cat "$SECRETS_DIR"/kafka-*.password | sha256sum | cut -c1-16)-v4"
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
		return
	fi
	log "kafka: creating the SCRAM users and ACLs of the SASL_SSL listener (once)"
	local start=$SECONDS
	for u in "${KAFKA_USERS[@]}"; do
		kafka_tool org.apache.kafka.tools.ConfigCommand --bootstrap-server "$KAFKA_HOST:$KAFKA_PORT" --alter \
			--entity-type users --entity-name "$u" \
			--add-config "SCRAM-SHA-512=[iterations=4096,password=$(cat "$SECRETS_DIR/kafka-$u.password")]"
	done
	local events=herald.alert-events.v1 dlq=herald.alert-events.dlq.v1 state=herald.alert-state.v1
	local svc=(--allow-principal User:herald-intake --allow-principal User:herald-rules
		--allow-principal User:herald-notification --allow-principal User:herald-acknowledgement)
	# Every service reads the topics' metadata and may create them (EnsureTopics).
	kafka_acl "${svc[@]}" --operation Describe --operation Create --topic "$events" --topic "$dlq" --topic "$state"
	# Every service appends events.
	kafka_acl "${svc[@]}" --operation Write --topic "$events"
	# The consumers dead-letter what they cannot handle.
	kafka_acl --allow-principal User:herald-rules --allow-principal User:herald-notification \
		--allow-principal User:herald-acknowledgement --operation Write --topic "$dlq"
	# Each consumer reads the events in its own group.
	kafka_acl --allow-principal User:herald-rules --operation Read --topic "$events" --group rules
	kafka_acl --allow-principal User:herald-notification --operation Read --topic "$events" --group notification
	kafka_acl --allow-principal User:herald-acknowledgement --operation Read --topic "$events" --group acknowledgement
	# The acknowledgement service owns the compacted state topic.
	kafka_acl --allow-principal User:herald-acknowledgement --operation Read --operation Write --topic "$state"
	# The rules service owns the policy-bundle topic (proposals and approvals
	# of policy bundles): it creates, reads and appends to it.
	kafka_acl --allow-principal User:herald-rules --operation Describe --operation Create --operation Read --operation Write \
		--topic herald.policy-bundles.v1
	# The acknowledgement service keeps the audit trail (herald.audit.v1,
	# herald.audit-intake.v1, herald.audit-anchors.v1: the prefix herald.audit)
	# in its groups acknowledgement-audit and acknowledgement-audit-forward
	# (matched by the prefixed group acknowledgement above).
	kafka_acl --allow-principal User:herald-acknowledgement --operation Describe --operation Create \
		--operation Read --operation Write --topic herald.audit
	# ... and forwards rules' policy bundle events into it.
	kafka_acl --allow-principal User:herald-acknowledgement --operation Read --operation Describe --topic herald.policy-bundles
	# An operator verifies and exports the trail (heraldctl audit) and anchors
	# it on demand; it cannot write the chain itself.
	kafka_acl --allow-principal User:herald-operator --operation Read --operation Describe --topic herald.audit
	kafka_acl --allow-principal User:herald-operator --operation Write --topic herald.audit-anchors
	# The console's reporting projector reads the events in its groups
	# (herald-reporting-g<generation>) and dead-letters what it cannot
	# decode; it appends nothing to the log and creates no topic.
	kafka_acl --allow-principal User:herald-console --operation Read --operation Describe --topic "$events" --group herald-reporting
	kafka_acl --allow-principal User:herald-console --operation Write --operation Describe --topic "$dlq"
	# An operator follows the log (heraldctl tail) and reads nothing else.
	kafka_acl --allow-principal User:herald-operator --operation Read --operation Describe --topic "$events" --group heraldctl
	echo "$want" >"$stamp"
	log "kafka: users and ACLs created in $((SECONDS - start))s"
}

redis_secure_ping() {
	[[ "$(timeout 3 redis-cli --tls --cacert "$TLS_DIR/ca.crt" -h "$REDIS_HOST" -p "$REDIS_TLS_PORT" \
		--user herald-admin --pass "$(cat "$SECRETS_DIR/redis-herald-admin.password")" --no-auth-warning ping 2>/dev/null)" == PONG ]]
}

# redis_acl_line USER RULES: a user directive with the password's SHA-256 (the
# configuration never holds the password).
redis_acl_line() {
	printf 'user %s on #%s %s\n' "$1" "$(tr -d '\n' <"$SECRETS_DIR/redis-$1.password" | sha256sum | cut -d' ' -f1)" "$2"
}

redis_secure_config() {
	mkdir -p "$REDIS_SECURE_HOME"
	(
		umask 077
		{
			cat <<EOF
# Written by platform/infra/deps.sh: TLS only, ACL users only.
port 0
tls-port $REDIS_TLS_PORT
bind $REDIS_HOST
tls-cert-file $TLS_DIR/redis.crt
tls-key-file $TLS_DIR/redis.key
tls-ca-cert-file $TLS_DIR/ca.crt
tls-auth-clients optional
save ""
appendonly no
databases 16
dir $REDIS_SECURE_HOME
logfile $REDIS_SECURE_LOG
pidfile $REDIS_SECURE_PID
daemonize yes
user default off
EOF
			# Each service reaches only its own keys (and channels); the
			# harness reaches everything.
			redis_acl_line herald-admin '~* &* +@all'
			redis_acl_line herald-intake 'resetchannels ~herald:intake:* +@all -@dangerous'
			redis_acl_line herald-notification 'resetchannels ~herald:notification:* &herald:notification:* +@all -@dangerous'
			redis_acl_line herald-acknowledgement 'resetchannels ~{herald:ack}* ~{herald:timers:* &{herald:ack}* &herald:timers:* +@all -@dangerous'
		} >"$REDIS_SECURE_HOME/redis.conf"
	)
}

redis_secure_up() {
	if [[ $secure_changed -eq 0 ]] && redis_secure_ping; then
		log "redis (TLS, ACL): reusing the instance on $REDIS_HOST:$REDIS_TLS_PORT"
		return
	fi
	redis_secure_down
	if port_open "$REDIS_HOST" "$REDIS_TLS_PORT"; then
		die "port $REDIS_HOST:$REDIS_TLS_PORT is taken by something that is not our TLS Redis"
	fi
	redis_secure_config
	log "redis (TLS, ACL): starting on $REDIS_HOST:$REDIS_TLS_PORT"
	redis-server "$REDIS_SECURE_HOME/redis.conf" </dev/null 9>&-
	local i
	for ((i = 0; i < 100; i++)); do
		redis_secure_ping && {
			log "redis (TLS, ACL): ready"
			return
		}
		sleep 0.1
	done
	tail -n 30 "$REDIS_SECURE_LOG" >&2 || true
	die "the TLS redis did not answer PING on $REDIS_HOST:$REDIS_TLS_PORT within 10s (log: $REDIS_SECURE_LOG)"
}

redis_secure_down() {
	if pid_alive "$REDIS_SECURE_PID" redis-server; then
		local pid
		pid="$(cat "$REDIS_SECURE_PID")"
		log "redis (TLS, ACL): stopping pid $pid"
		kill "$pid" 2>/dev/null || true
		wait_exit "$pid" 20 "redis (TLS, ACL)"
	fi
	rm -f "$REDIS_SECURE_PID"
}

# ---------------------------------------------------------------- chaos cluster
# A three-broker KRaft cluster for the chaos suite (e2e/chaos): three JVMs,
# each broker and controller (a static quorum of three voters), replication
# factor 3 and min.insync.replicas 2 by default, so that one broker may die
# and acks=all appends still succeed. Plaintext only, on ports derived from
# the single broker's (so worktrees do not collide): broker i (1..3) on
# KAFKA_PORT+9+i, its controller on KAFKA_PORT+19+i. Data and logs under
# $DEPS/cluster/node<i>; the cluster's env file is $DEPS/cluster/env.

CLUSTER_HOME="$DEPS/cluster"
CLUSTER_BASE_PORT="${HERALD_CLUSTER_PORT:-$((KAFKA_PORT + 10))}"
CLUSTER_CONTROLLER_BASE_PORT="${HERALD_CLUSTER_CONTROLLER_PORT:-$((KAFKA_PORT + 20))}"
CLUSTER_ID=Zr3oC9kKQ2m7uJd1VXn5Aw
CLUSTER_HEAP_OPTS="${HERALD_CLUSTER_HEAP_OPTS:--Xms96m -Xmx384m}"

cluster_port() { echo $((CLUSTER_BASE_PORT + $1 - 1)); }
cluster_controller_port() { echo $((CLUSTER_CONTROLLER_BASE_PORT + $1 - 1)); }
cluster_node_home() { echo "$CLUSTER_HOME/node$1"; }
cluster_pid_file() { echo "$(cluster_node_home "$1")/kafka.pid"; }

cluster_brokers() {
	local i out=""
	for i in 1 2 3; do out="$out${out:+,}$KAFKA_HOST:$(cluster_port "$i")"; done
	echo "$out"
}

cluster_voters() {
	local i out=""
	for i in 1 2 3; do out="$out${out:+,}$i@$KAFKA_HOST:$(cluster_controller_port "$i")"; done
	echo "$out"
}

# cluster_node_ready I: broker I answers metadata and lists itself.
cluster_node_ready() {
	local port
	port="$(cluster_port "$1")"
	port_open "$KAFKA_HOST" "$port" || return 1
	timeout 10 kcat -b "$KAFKA_HOST:$port" -L -m 5 2>/dev/null | grep -q "broker $1 at $KAFKA_HOST:$port"
}

cluster_config() {
	local i=$1 home
	home="$(cluster_node_home "$i")"
	mkdir -p "$home/logs"
	cat >"$home/server.properties" <<EOF
# Written by platform/infra/deps.sh (cluster): node $i of 3, broker + controller (KRaft).
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$(cluster_voters)
listeners=PLAINTEXT://$KAFKA_HOST:$(cluster_port "$i"),CONTROLLER://$KAFKA_HOST:$(cluster_controller_port "$i")
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$(cluster_port "$i")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$home/data
num.partitions=1
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
unclean.leader.election.enable=false
# A dead broker leaves the ISR after 10 s without fetching (default 30 s).
replica.lag.time.max.ms=10000
num.network.threads=1
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.retention.hours=24
log.segment.bytes=33554432
EOF
	write_log4j "$home/log4j2.xml" "$home/logs" "20 MB" " (cluster): node $i logs to a file"
}

# cluster_cmd I ARGS...: KAFKA_CMD for node I (its own log4j and heap).
cluster_cmd() {
	local home
	home="$(cluster_node_home "$1")"
	shift
	# shellcheck disable=SC2206 # CLUSTER_HEAP_OPTS is a list of JVM flags.
	KAFKA_CMD=(java $CLUSTER_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
		-Dlog4j2.configurationFile="$home/log4j2.xml" -Dkafka.logs.dir="$home/logs"
		-cp "$KAFKA_LIB/*" "$@")
}

cluster_format() {
	local i=$1 home stamp want
	home="$(cluster_node_home "$i")"
	stamp="$home/formatted-version"
	want="$KAFKA_VERSION $(cluster_voters)"
	if [[ -f "$home/data/meta.properties" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
		return
	fi
	# Test data only: a new version or quorum starts from an empty log.
	rm -rf "$home/data"
	log "cluster: formatting node $i (KRaft, cluster $CLUSTER_ID)"
	cluster_cmd "$i" kafka.tools.StorageTool format --ignore-formatted -t "$CLUSTER_ID" -c "$home/server.properties"
	"${KAFKA_CMD[@]}" </dev/null >"$home/logs/format.log" 2>&1 9>&- || {
		cat "$home/logs/format.log" >&2
		die "cluster: storage format of node $i failed (log: $home/logs/format.log)"
	}
	echo "$want" >"$stamp"
}

# cluster_start I: start node I's JVM (cluster_wait waits for it).
cluster_start() {
	local i=$1 home pid
	home="$(cluster_node_home "$i")"
	pid="$(cluster_pid_file "$i")"
	if pid_alive "$pid" "$home"; then
		return
	fi
	if port_open "$KAFKA_HOST" "$(cluster_port "$i")" || port_open "$KAFKA_HOST" "$(cluster_controller_port "$i")"; then
		die "cluster: port $(cluster_port "$i") or $(cluster_controller_port "$i") is taken by something that is not node $i"
	fi
	cluster_config "$i"
	cluster_format "$i"
	log "cluster: starting node $i on $KAFKA_HOST:$(cluster_port "$i") (controller $(cluster_controller_port "$i"))"
	rm -f "$pid"
	cluster_cmd "$i" kafka.Kafka "$home/server.properties"
	# A session of its own, as kafka_up; 9>&-: not holding the deps.lock.
	# shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner bash.
	setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pid" "${KAFKA_CMD[@]}" \
		</dev/null >"$home/logs/stdout.log" 2>&1 9>&- &
	local n
	for ((n = 0; n < 50; n++)); do
		[[ -s "$pid" ]] && break
		sleep 0.1
	done
}

# cluster_wait I...: wait until each node serves metadata.
cluster_wait() {
	local i deadline=$((SECONDS + KAFKA_WAIT_SECONDS)) start=$SECONDS
	for i in "$@"; do
		while ! cluster_node_ready "$i"; do
			pid_alive "$(cluster_pid_file "$i")" "$(cluster_node_home "$i")" || {
				tail -n 40 "$(cluster_node_home "$i")/logs/server.log" >&2 2>/dev/null || true
				die "cluster: node $i exited while starting (logs in $(cluster_node_home "$i")/logs)"
			}
			((SECONDS < deadline)) || die "cluster: node $i did not serve metadata within ${KAFKA_WAIT_SECONDS}s"
			sleep 1
		done
	done
	log "cluster: node(s) $* ready after $((SECONDS - start))s"
}

# cluster_stop I SIGNAL: stop node I (TERM: a clean shutdown; KILL: a crash).
cluster_stop() {
	local i=$1 sig=${2:-TERM} pid_file
	pid_file="$(cluster_pid_file "$i")"
	if pid_alive "$pid_file" "$(cluster_node_home "$i")"; then
		local pid
		pid="$(cat "$pid_file")"
		log "cluster: SIG$sig to node $i (pid $pid)"
		kill -s "$sig" "$pid" 2>/dev/null || true
		wait_exit "$pid" 60 "cluster node $i"
	else
		log "cluster: node $i not running"
	fi
	rm -f "$pid_file"
}

cluster_up() {
	kafka_jars
	mkdir -p "$CLUSTER_HOME"
	local i
	for i in 1 2 3; do cluster_start "$i"; done
	cluster_wait 1 2 3
	cat >"$CLUSTER_HOME/env" <<EOF
# Written by platform/infra/deps.sh cluster-up: the chaos suite's three brokers.
export HERALD_CHAOS_KAFKA_BROKERS=$(cluster_brokers)
EOF
	log "cluster: up ($(cluster_brokers)); env in $CLUSTER_HOME/env"
}

# cluster_down: SIGTERM to every node at once (a node stopped last, after
# the quorum is gone, would wait for a controller that never answers).
cluster_down() {
	local i pid_file pids=()
	for i in 1 2 3; do
		pid_file="$(cluster_pid_file "$i")"
		if pid_alive "$pid_file" "$(cluster_node_home "$i")"; then
			pids+=("$i:$(cat "$pid_file")")
			kill -s TERM "$(cat "$pid_file")" 2>/dev/null || true
		fi
	done
	for i in "${pids[@]}"; do
		wait_exit "${i#*:}" 60 "cluster node ${i%%:*}"
		rm -f "$(cluster_pid_file "${i%%:*}")"
	done
}

cluster_status() {
	local i rc=0
	for i in 1 2 3; do
		if cluster_node_ready "$i"; then
			echo "cluster node $i: up on $KAFKA_HOST:$(cluster_port "$i")"
		else
			echo "cluster node $i: down"
			rc=1
		fi
	done
	return $rc
}

# cluster_node_arg N: a node number, 1 to 3.
cluster_node_arg() {
	[[ "${1:-}" =~ ^[123]$ ]] || die "cluster commands take a node number 1, 2 or 3, got '${1:-}'"
}


# ---------------------------------------------------------------- main

write_env() {
	cat >"$DEPS/env" <<EOF
# Written by platform/infra/deps.sh: source it before running go test by hand.
export HERALD_TEST_KAFKA_BROKERS=$KAFKA_HOST:$KAFKA_PORT
export HERALD_TEST_REDIS_ADDR=$REDIS_HOST:$REDIS_PORT
export HERALD_TEST_KAFKA_SASL_BROKERS=$KAFKA_HOST:$KAFKA_SASL_PORT
export HERALD_TEST_REDIS_TLS_ADDR=$REDIS_HOST:$REDIS_TLS_PORT
export HERALD_TEST_SECURE_DIR=$SECURE
export HERALD_TEST_POSTGRES_URL=$(pg_url)
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
	if port_open "$KAFKA_HOST" "$KAFKA_SASL_PORT"; then
		echo "kafka SASL_SSL: up on $KAFKA_HOST:$KAFKA_SASL_PORT"
	else
		echo "kafka SASL_SSL: down"
		rc=1
	fi
	if redis_secure_ping; then
		echo "redis (TLS, ACL): up on $REDIS_HOST:$REDIS_TLS_PORT"
	else
		echo "redis (TLS, ACL): down"
		rc=1
	fi
	if pg_ready; then
		echo "postgres: up on $PG_HOST:$PG_PORT ($(pg_url))"
	else
		echo "postgres: down"
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
		secure_material
		kafka_restart_if_insecure
		kafka_up
		kafka_secure_setup
		redis_secure_up
		postgres_up
		write_env
		;;
	down)
		cluster_down
		kafka_down
		redis_secure_down
		redis_down
		postgres_down
		;;
	postgres-url) pg_url ;;
	kafka-restart)
		# A broker restart under load, for the e2e fault suite.
		kafka_down
		kafka_up
		;;
	status) status ;;
	cluster-up) cluster_up ;;
	cluster-down) cluster_down ;;
	cluster-status) cluster_status ;;
	cluster-kill)
		# A broker crash (SIGKILL); cluster-start brings it back.
		cluster_node_arg "${2:-}"
		cluster_stop "$2" KILL
		;;
	cluster-start)
		cluster_node_arg "${2:-}"
		cluster_start "$2"
		cluster_wait "$2"
		;;
	cluster-restart)
		# A clean broker restart (SIGTERM, then start).
		cluster_node_arg "${2:-}"
		cluster_stop "$2" TERM
		cluster_start "$2"
		cluster_wait "$2"
		;;
	*)
		echo "usage: $0 up|down|kafka-restart|status|postgres-url|cluster-up|cluster-down|cluster-status|cluster-kill N|cluster-start N|cluster-restart N" >&2
		exit 2
		;;
	esac
}

main "$@"
