# syntax=docker/dockerfile:1
# The automaton image: the release binary alone on distroless, as a non-root user.
#
#   docker build -t automaton:$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1) .
#
# The tag is the crate's version, as deploy/base/kustomization.yaml expects.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the registry and target/ between builds; they are not part of the
# image, so the binary is installed out of target/ before the step ends.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin automaton \
    && install -D -m 0755 target/release/automaton /out/automaton

# glibc and libgcc only (TLS is rustls, built in): no shell, no package manager.
# `make binary-check` asserts the binary links nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/automaton /automaton
USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["/automaton"]
CMD ["run"]
