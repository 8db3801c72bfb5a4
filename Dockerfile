# perf's container image: the release build on Debian bookworm, the binary alone in a slim
# image. Built from the repository root (docker build -t perf:latest .); the Kubernetes
# manifests under deploy/kubernetes/ run it as the shards of one benchmark.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p perf-host && cp target/release/perf /usr/local/bin/perf

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/perf /usr/local/bin/perf
# Results go to /results (the shards' shared volume in deploy/kubernetes/).
WORKDIR /results
ENTRYPOINT ["perf"]
CMD ["--help"]
