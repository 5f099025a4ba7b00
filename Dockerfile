# syntax=docker/dockerfile:1
#
# regmirror as a container: a static binary on a distroless base (CA
# certificates, /etc/passwd, nothing else), running as an unprivileged user,
# the cache on the /data volume.
#
#   docker build -t regmirror --build-arg VERSION=$(git describe --always --dirty) .
#   docker run -d --name regmirror -p 5000:5000 -v regmirror-data:/data regmirror
#
# A named volume takes the image's ownership of /data (uid 65532). For a
# bind mount, chown the host directory to 65532:65532 first.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=devel
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/regmirror ./cmd/regmirror
# The volume's mount point, owned by the user the daemon runs as.
RUN install -d -m 0750 -o 65532 -g 65532 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/regmirror /usr/local/bin/regmirror
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV REGMIRROR_LISTEN=:5000 \
    REGMIRROR_DATA_DIR=/data \
    REGMIRROR_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 5000
# SIGTERM lets transfers in flight finish (up to 30s): give docker stop -t 45.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/regmirror"]
CMD ["serve"]
