# syntax=docker/dockerfile:1
# One binary, three stages: build, test (the suite, for `docker compose run
# --rm tests`) and the small runtime image every service uses.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/selfplay ./cmd/selfplay

FROM build AS test
# Fault and security tests start private PostgreSQL and NATS servers (to
# restart them, or to require auth and TLS) and the report test renders in
# headless Chromium, so the test image carries the same Debian packages CI has;
# python3 checks the vLLM example's trainer script (the golang image has none).
RUN apt-get update && apt-get install -y --no-install-recommends \
        postgresql nats-server chromium python3 \
    && rm -rf /var/lib/apt/lists/*
# The llama-server tests run llama.cpp's server (Debian sid's build, into
# /opt/selfplay-llamacpp), as CI does.
RUN scripts/install-llama-server
CMD ["go", "test", "-count=1", "-timeout", "15m", "./..."]

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# Not root: the image runs as selfplay (uid 1000). Compose starts the
# orchestrator as root only for it to become the owner of the bind-mounted
# ./exports at once (SELFPLAY_RUN_AS_OWNER_OF, see docs/operations.md), so exports on
# the host belong to that user; any uid may write the models directory,
# which a fresh `models` volume copies (owner and mode).
RUN groupadd --gid 1000 selfplay \
    && useradd --uid 1000 --gid 1000 --home-dir /app --no-create-home --shell /usr/sbin/nologin selfplay \
    && mkdir -p /app/models /app/exports && chown selfplay:selfplay /app /app/models /app/exports \
    && chmod 1777 /app/models
COPY --from=build /out/selfplay /usr/local/bin/selfplay
COPY examples /app/examples
WORKDIR /app
USER 1000:1000
ENTRYPOINT ["selfplay"]
