#!/usr/bin/env bash
# Makes a fresh Debian machine able to build and test automaton. Idempotent and quiet when
# everything is already there.
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# The tests' librdkafka (a dev-dependency: tests set up topics and commits with it) is built
# from source with TLS: it links the system OpenSSL. The release binary does not.
pkg-config --exists openssl 2>/dev/null || need_apt+=(libssl-dev)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# The whole-binary Kubernetes tests run ../shared/tools/fakekube.py, which needs PyYAML.
python3 -c 'import yaml' >/dev/null 2>&1 || need_apt+=(python3-yaml)
# The PostgreSQL tests start a throw-away server: PostgreSQL 15 is on the machine image;
# install it where it is not.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
command -v runuser >/dev/null 2>&1 || need_apt+=(util-linux)
# The PostgreSQL and Kafka TLS tests make throw-away certificates with the openssl command.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The notification tests post to a real Alertmanager, the monitoring kit's alerts are checked
# and unit-tested by promtool (Debian's `prometheus` ships it). The tests start their own on
# 127.0.0.1, on free ports.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 \
  || need_apt+=(prometheus-alertmanager)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "deps: cargo is missing; install Rust (rustup) first" >&2
    exit 1
  fi
fi
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
  done
fi

# The Kafka tests start throw-away brokers of nisshi 0.8.1 (a Kafka-protocol broker from
# crates.io, built with libsql for the SASL test's users; about 15 minutes to build the
# first time, skipped when installed).
sh "$(dirname "$0")/nisshi.sh" install
