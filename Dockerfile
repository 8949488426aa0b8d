# hale: multi-stage build, slim non-root runtime running the quickstart.
#
#   docker build -t hale .
#   docker run --rm -p 10000:10000 hale
#
# The quickstart binds the admin to 127.0.0.1:9901 (never expose an admin
# by accident); mount a config that binds it to 0.0.0.0 to publish it.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY benches ./benches
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && cargo build --release --locked --bin hale || true
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin hale

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin hale
COPY --from=build /src/target/release/hale /usr/local/bin/hale
COPY config /etc/hale
USER 10001:10001
EXPOSE 10000 9901
ENTRYPOINT ["/usr/local/bin/hale"]
CMD ["-c", "/etc/hale/quickstart.yaml"]
