#!/bin/sh
# Checks the release binary as the image ships it (distroless cc-debian12, no shell, no
# package manager): it links only libraries that image has, it is stripped, and it says its
# version. Run by `make test` (target `binary-check`).
#   scripts/check-binary.sh target/release/automaton
set -eu
bin=${1:?usage: $0 BINARY}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

# What gcr.io/distroless/cc-debian12 provides: glibc, libgcc, libstdc++ (and OpenSSL 3,
# which the binary no longer needs: TLS is rustls, so it is not allowed either).
allowed='linux-vdso.so.1 ld-linux-x86-64.so.2 ld-linux-aarch64.so.1 linux-vdso.so.1
libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 libgcc_s.so.1 libstdc++.so.6'

status=0
needed=$(ldd "$bin" | awk '{print $1}' | sed 's|.*/||')
for lib in $needed; do
    case " $(echo $allowed) " in
        *" $lib "*) ;;
        *) echo "check-binary: $bin links $lib, which distroless cc-debian12 does not ship" >&2; status=1 ;;
    esac
done

if readelf -S "$bin" | grep -q '\.symtab'; then
    echo "check-binary: $bin is not stripped (a .symtab section)" >&2
    status=1
fi

said=$("$bin" --version)
if [ "$said" != "automaton $version" ]; then
    echo "check-binary: \`$bin --version\` says \"$said\", expected \"automaton $version\"" >&2
    status=1
fi

if [ "$status" -eq 0 ]; then
    size=$(wc -c < "$bin")
    echo "check-binary: ok: $(echo $needed | tr ' ' ',') ; stripped ; $said ; $size bytes"
fi
exit "$status"
