# Multi-stage build of the fashion classification service.
#
#   docker build -t fashion_classifier .
#   docker run -d -p 8080:80 fashion_classifier     # then open http://localhost:8080
#
# Ours, tagged with the version "fashion version" reports and the commit:
#   docker build --build-arg COMMIT=$(git rev-parse HEAD) -t fashion-classifier:1.0.0 .
#   docker run -d -p 8080:80 fashion-classifier:1.0.0
#
# The release binary is built by deploy/build.sh, the same script that
# deploy/image-check uses to build and test this image's filesystem without
# a Docker engine; keep the two in step (deploy/imagecheck's tests compare
# this file's final stage with the image the check assembles).

# Build stage: the official Go image, pinned to the module's Go release line.
# It runs on the build machine's platform and cross-compiles for the target
# (docker build --platform linux/amd64 on an arm64 laptop needs no emulation).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
# Download modules in their own layer so code changes do not refetch them.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# .git is not in the build context (.dockerignore), so the commit comes
# from a build argument. VERSION defaults to the source's release
# (internal/buildinfo.Release; a test keeps the two equal).
ARG VERSION=1.0.0
ARG COMMIT=unknown
RUN GOOS="$TARGETOS" GOARCH="$TARGETARCH" VERSION="$VERSION" COMMIT="$COMMIT" \
    deploy/build.sh /rootfs/fashion
# The final image's filesystem: the static binary, the CA bundle for
# fetching https:// image URLs, a passwd/group entry for the non-root user,
# and a world-writable sticky /tmp for request bodies Go spills to disk.
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp \
 && chmod 1777 /rootfs/tmp \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt \
 && cp deploy/rootfs/etc/passwd deploy/rootfs/etc/group /rootfs/etc/

# Final stage: nothing but the files above; no shell, no package manager.
FROM scratch
ARG VERSION=1.0.0
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="fashion-classifier" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$COMMIT"
COPY --from=build /rootfs/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# The service listens on port 80 inside the container, so "docker run -p
# 8080:80" and "-p 80:80" work as written. A non-root process may bind it:
# Docker (20.10 and later) and containerd set the container's
# net.ipv4.ip_unprivileged_port_start to 0. Kubernetes manifests pass
# -addr=:8080 instead (deploy/k8s), and PORT or -addr override this.
ENV PORT=80
# nonroot (see deploy/rootfs/etc/passwd); numeric so Kubernetes'
# runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
EXPOSE 80
# No HEALTHCHECK: scratch has no shell or curl to run one, and orchestrators
# probe GET /readyz and GET /healthz themselves.
ENTRYPOINT ["/fashion", "serve"]
