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
# headless Chromium, so the test image carries the same Debian packages CI has.
RUN apt-get update && apt-get install -y --no-install-recommends \
        postgresql nats-server chromium \
    && rm -rf /var/lib/apt/lists/*
# The llama-server tests run llama.cpp's server (Debian sid's build, into
# /opt/selfplay-llamacpp), as CI does.
RUN scripts/install-llama-server
CMD ["go", "test", "-count=1", "-timeout", "15m", "./..."]

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/selfplay /usr/local/bin/selfplay
COPY examples /app/examples
WORKDIR /app
ENTRYPOINT ["selfplay"]
