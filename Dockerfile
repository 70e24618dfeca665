# The callstream server as a container image. `gcloud run deploy --source .` (Cloud Run) builds
# this file, as does `docker build .` / `podman build .`. scripts/dockerfile-steps.sh checks its
# steps without a container builder (the build command, the COPY sources, the binary as the
# image's user with PORT set).
#
# Build stage: the Rust toolchain, the workspace, one release build of the `callstream` binary.
# Bookworm on both sides: the binary links the builder's glibc, so the runtime's must be as new.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# --locked: exactly the dependency versions in Cargo.lock, as CI tests them.
RUN cargo build --release -p callstream --locked

# Runtime stage: glibc and libgcc only (distroless "cc"), no shell, no package manager, running as
# the image's unprivileged user (uid 65532). No HEALTHCHECK: the image has no client to run one
# with, and Cloud Run and Kubernetes probe `/healthz` themselves (Docker's HEALTHCHECK is ignored
# there).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/callstream /usr/local/bin/callstream
# The platform sets PORT (Cloud Run does); HOST must be every interface inside a container.
ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/callstream"]
