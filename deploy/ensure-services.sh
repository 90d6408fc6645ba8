#!/usr/bin/env bash
# Make sure PostgreSQL and RabbitMQ answer on loopback; start them when installed but stopped.
set -euo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
rabbit_up() { rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1; }

wait_for() {  # name, check, seconds
  local name=$1 check=$2 secs=$3
  for _ in $(seq 1 "$secs"); do
    if $check; then echo "$name is up"; return 0; fi
    sleep 1
  done
  echo "$name did not come up within ${secs}s" >&2
  return 1
}

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    wait_for PostgreSQL pg_up 60
  else
    echo "PostgreSQL is not running on 127.0.0.1:5432 and is not installed here" >&2
    exit 1
  fi
else
  echo "PostgreSQL is up"
fi

if ! rabbit_up; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "starting RabbitMQ"
    rabbitmq-server -detached || true
    wait_for RabbitMQ rabbit_up 120
  else
    echo "RabbitMQ is not running on 127.0.0.1:5672 and is not installed here" >&2
    exit 1
  fi
else
  echo "RabbitMQ is up"
fi
