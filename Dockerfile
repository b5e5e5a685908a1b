# The release binary on a slim Debian, with the demo configuration and data beside it.
# Build: docker build -t cruscotto .   (compiling DataFusion takes a while: ~25 min on two cores)

FROM rust:1-bookworm AS build
# build.rs runs `npm ci` in web/ once: the dashboard's libraries are embedded in the binary.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin cruscotto

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /app cruscotto
WORKDIR /app
COPY --from=build /src/target/release/cruscotto /usr/local/bin/cruscotto
COPY cruscotto.toml cruscotto.compose.toml ./
COPY connectors connectors
COPY connectors.compose connectors.compose
COPY queries queries
COPY dashboards dashboards
COPY data data
RUN mkdir -p var && chown cruscotto var
USER cruscotto
EXPOSE 8080
ENTRYPOINT ["cruscotto"]
CMD ["serve"]
