#!/bin/sh
# Installs the test Kafka broker `nisshi` used by tests/kafka.rs (which starts its own broker
# per test), unless the right version is already there.
#   scripts/nisshi.sh install
set -eu
VERSION=0.8.1
case "${1:-install}" in
install)
    if [ "$(nisshi --version 2>/dev/null | awk '{print $NF}')" = "$VERSION" ]; then
        echo "nisshi $VERSION already installed"
        exit 0
    fi
    cargo install nisshi --version "$VERSION" --locked --ignore-rust-version \
        --no-default-features --features dynostore
    ;;
*)
    echo "usage: $0 install" >&2
    exit 2
    ;;
esac
