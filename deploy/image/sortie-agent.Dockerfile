# syntax=docker/dockerfile:1
# The sortie-agent image: the static binary, stamped with its version, on an empty base, running
# as a numeric non-root user (read-only root filesystems work). deploy/image builds the same
# image without a Docker daemon; its test keeps the two alike. From the repository root:
#
#   docker build -f deploy/image/sortie-agent.Dockerfile --build-arg VERSION=v0.1.0 \
#     --build-arg REVISION=$(git rev-parse HEAD) -t registry.example/sortie-agent:v0.1.0 . \
#     && docker push registry.example/sortie-agent:v0.1.0
#
# (docker buildx build --platform linux/amd64,linux/arm64 --push ... for both platforms.)
ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS TARGETARCH VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/sortie-dev/sortie/cmd/internal/version.stamped=${VERSION}" \
      -o /out/usr/local/bin/sortie-agent ./cmd/sortie-agent

FROM scratch
ARG VERSION=dev REVISION=
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/usr/local/bin/sortie-agent /usr/local/bin/sortie-agent

ENV PATH=/usr/local/bin
ENV SORTIE_AGENT_HEALTH_ADDR=0.0.0.0:8081
WORKDIR /
EXPOSE 8081/tcp
LABEL org.opencontainers.image.title="sortie-agent" \
      org.opencontainers.image.description="Sortie edge agent: connects a Kubernetes cluster to a Sortie server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/sortie-dev/sortie" \
      org.opencontainers.image.url="https://github.com/sortie-dev/sortie"
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sortie-agent"]
