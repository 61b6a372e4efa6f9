# syntax=docker/dockerfile:1
# The acemux image. The binary is built by scripts/build-release.sh, the same script
# CI runs (scripts/check-deploy.sh), and runs as an unprivileged user on Debian's slim
# image.
#
#   docker build -t acemux --build-arg ACEMUX_BUILD_COMMIT=$(git rev-parse --short=12 HEAD) .
#   docker run -d -p 6880:6880 -v acemux-data:/data -e ACEMUX_ENGINES=<engine>:6878 \
#     -e ACEMUX_API_KEY=<key> acemux
#
# deploy/compose.yaml runs it next to AceStream engines behind a VPN.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# .git is not in the build context (.dockerignore): the commit `acemux --version` shows
# comes in as a build argument, else it is `unknown`.
ARG ACEMUX_BUILD_COMMIT=
# The registry and target caches persist between builds (BuildKit); the binary is
# copied out of the cached target in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    ACEMUX_BUILD_COMMIT="${ACEMUX_BUILD_COMMIT}" ./scripts/build-release.sh /usr/local/bin/acemux

FROM debian:bookworm-slim
# The binary needs only glibc (SQLite is built in; acemux speaks no TLS, so no CA
# certificates). Its user owns /data, where the event database lives.
RUN groupadd --system --gid 10001 acemux \
    && useradd --system --uid 10001 --gid acemux --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin acemux \
    && mkdir /data \
    && chown acemux:acemux /data
COPY --from=build /usr/local/bin/acemux /usr/local/bin/acemux
ENV ACEMUX_LISTEN=0.0.0.0:6880 \
    ACEMUX_DB=/data/acemux.db
VOLUME ["/data"]
WORKDIR /data
USER acemux
EXPOSE 6880
# `acemux health` asks /health of ACEMUX_LISTEN (on loopback); exit 0 healthy, 1 not.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["acemux", "health"]
ENTRYPOINT ["acemux"]
CMD ["serve"]
