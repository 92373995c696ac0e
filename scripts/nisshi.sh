#!/bin/sh
# Installs the test Kafka broker `nisshi` used by the Kafka tests (each starts its own broker),
# unless the right build is already there. It is built with libsql: the SASL test's broker
# keeps its SCRAM users in SQLite (the in-memory storage cannot hold users). Installed in a
# directory of its own, named by version and features, where tests/kafka_support looks.
#   scripts/nisshi.sh install
set -eu
VERSION=0.8.1
ROOT="${NISSHI_ROOT:-$HOME/.cache/automaton/nisshi-$VERSION-libsql}"
case "${1:-install}" in
install)
    if [ -x "$ROOT/bin/nisshi" ] && [ "$("$ROOT/bin/nisshi" --version 2>/dev/null | awk '{print $NF}')" = "$VERSION" ]; then
        echo "nisshi $VERSION (libsql) already installed in $ROOT"
        exit 0
    fi
    cargo install nisshi --version "$VERSION" --locked --ignore-rust-version \
        --no-default-features --features dynostore,libsql --root "$ROOT"
    ;;
*)
    echo "usage: $0 install" >&2
    exit 2
    ;;
esac
