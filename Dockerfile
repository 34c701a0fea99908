# Multi-stage build of ioc-aggregator. The binary bundles the tz database and needs no
# system libraries beyond libc.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY src ./src
COPY benches ./benches
COPY config ./config
RUN cargo build --release --locked --bin ioc-aggregator

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/ioc ioc \
    && mkdir -p /var/lib/ioc && chown ioc /var/lib/ioc
COPY --from=build /src/target/release/ioc-aggregator /usr/local/bin/ioc-aggregator
COPY config /etc/ioc-aggregator
USER ioc
WORKDIR /var/lib/ioc
EXPOSE 8080
ENTRYPOINT ["ioc-aggregator"]
CMD ["--config", "/etc/ioc-aggregator/docker.toml", "run"]
