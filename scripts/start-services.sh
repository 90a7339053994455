#!/usr/bin/env bash
# Start the real components the end-to-end tests use: RabbitMQ and PostgreSQL from Debian's
# packages, listening on 127.0.0.1 only, with the harness's broker user and database.
#
# Idempotent and quick when they already run; works without systemd (containers, CI machines).
# Needs root (it configures the Debian packages). Prints the URLs the tests read:
#   HARNESS_TEST_AMQP_URL=amqp://harness:harness@127.0.0.1:5672/
#   HARNESS_TEST_PG_URL=postgresql+asyncpg://harness:harness@127.0.0.1:5432/harness
# Stop them with:  scripts/start-services.sh stop
set -euo pipefail

AMQP_USER="${HARNESS_AMQP_USER:-harness}"
AMQP_PASS="${HARNESS_AMQP_PASSWORD:-harness}"
PG_USER="${HARNESS_PG_USER:-harness}"
PG_PASS="${HARNESS_PG_PASSWORD:-harness}"
PG_DB="${HARNESS_PG_DB:-harness}"

log() { echo "start-services: $*" >&2; }

# -- RabbitMQ -------------------------------------------------------------------------------------
rabbit_config() {
  # Loopback only: AMQP listener, Erlang distribution and epmd. Written once (kept if present).
  local conf=/etc/rabbitmq/rabbitmq.conf
  if ! grep -q '^# harness' "$conf" 2>/dev/null; then
    cat >"$conf" <<'EOF'
# harness: loopback only (scripts/start-services.sh)
listeners.tcp.default = 127.0.0.1:5672
loopback_users = none
EOF
  fi
  local env=/etc/rabbitmq/rabbitmq-env.conf
  if ! grep -q '^# harness' "$env" 2>/dev/null; then
    cat >>"$env" <<'EOF'
# harness: loopback only (scripts/start-services.sh)
NODE_IP_ADDRESS=127.0.0.1
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
  fi
}

rabbit_running() { rabbitmqctl -q status >/dev/null 2>&1; }

start_rabbit() {
  command -v rabbitmq-server >/dev/null || { log "rabbitmq-server is not installed"; return 1; }
  rabbit_config
  export ERL_EPMD_ADDRESS=127.0.0.1
  if ! rabbit_running; then
    log "starting RabbitMQ"
    service rabbitmq-server start >/dev/null 2>&1 || rabbitmq-server -detached
    rabbitmqctl -q wait --timeout 120 /var/run/rabbitmq/pid >/dev/null 2>&1 \
      || rabbitmqctl -q await_startup --timeout 120 >/dev/null
  fi
  if ! rabbitmqctl -q list_users | awk '{print $1}' | grep -qx "$AMQP_USER"; then
    rabbitmqctl -q add_user "$AMQP_USER" "$AMQP_PASS" >/dev/null
    rabbitmqctl -q set_permissions -p / "$AMQP_USER" '.*' '.*' '.*' >/dev/null
  fi
}

stop_rabbit() { rabbit_running && { service rabbitmq-server stop >/dev/null 2>&1 || rabbitmqctl -q stop; }; return 0; }

# -- PostgreSQL -----------------------------------------------------------------------------------
pg_cluster() {  # "<version> <name>" of the first cluster Debian created
  pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1, $2}'
}

start_pg() {
  command -v pg_lsclusters >/dev/null || { log "postgresql is not installed"; return 1; }
  local cluster version name
  cluster="$(pg_cluster)"
  if [ -z "$cluster" ]; then
    version="$(ls /usr/lib/postgresql | sort -n | tail -1)"
    pg_createcluster "$version" main >/dev/null
    cluster="$version main"
  fi
  read -r version name <<<"$cluster"
  local conf="/etc/postgresql/$version/$name/conf.d/harness.conf"
  if [ ! -f "$conf" ]; then  # loopback only; enough connections for several harness processes
    printf "listen_addresses = '127.0.0.1'\nmax_connections = 200\n" >"$conf"
  fi
  if ! pg_lsclusters --no-header | awk -v v="$version" -v n="$name" '$1==v && $2==n {print $4}' | grep -q online; then
    log "starting PostgreSQL $version/$name"
    pg_ctlcluster "$version" "$name" start
  fi
  local psql=(su postgres -c)
  if ! "${psql[@]}" "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='$PG_USER'\"" | grep -q 1; then
    # CREATEDB: the tests give each run a database of its own
    "${psql[@]}" "psql -qc \"CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASS'\""
  fi
  if ! "${psql[@]}" "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='$PG_DB'\"" | grep -q 1; then
    "${psql[@]}" "createdb -O $PG_USER $PG_DB"
  fi
}

stop_pg() {
  local cluster version name
  cluster="$(pg_cluster)"
  [ -n "$cluster" ] || return 0
  read -r version name <<<"$cluster"
  pg_ctlcluster "$version" "$name" stop 2>/dev/null || true
}

case "${1:-start}" in
  start)
    start_rabbit
    start_pg
    echo "HARNESS_TEST_AMQP_URL=amqp://$AMQP_USER:$AMQP_PASS@127.0.0.1:5672/"
    echo "HARNESS_TEST_PG_URL=postgresql+asyncpg://$PG_USER:$PG_PASS@127.0.0.1:5432/$PG_DB"
    ;;
  stop) stop_rabbit; stop_pg ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
