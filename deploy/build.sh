#!/bin/sh
# build.sh OUT builds the release binary of fashion at OUT.
#
# It is the one definition of the release build: the Dockerfile's build
# stage and deploy/image-check both call it, so the image that is shipped
# and the image that is checked contain the same binary.
#
# The binary is static (CGO_ENABLED=0), carries no local paths (-trimpath),
# no symbol table or DWARF (-s -w), and no toolchain VCS stamp
# (-buildvcs=false, so a build with and without a .git directory is the
# same); its version and commit are set with -X instead:
#   VERSION  release version; default: the source's own,
#            internal/buildinfo.Release (what "fashion version" reports)
#   COMMIT   source revision; default: "git rev-parse HEAD", or "unknown"
# GOOS and GOARCH are passed through to cross-compile.
set -eu

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
	echo "usage: VERSION=v1.2.3 COMMIT=sha deploy/build.sh OUT" >&2
	exit 2
fi
# OUT is relative to the caller's directory, not the module root.
case $1 in
/*) out=$1 ;;
*) out=$PWD/$1 ;;
esac

# Run from the module root whatever the caller's directory.
cd "$(dirname "$0")/.."

in_git() {
	command -v git >/dev/null 2>&1 && git rev-parse --is-inside-work-tree >/dev/null 2>&1
}

if [ -z "${COMMIT:-}" ]; then
	if in_git; then
		COMMIT=$(git rev-parse HEAD)
	else
		COMMIT=unknown
	fi
fi
case "${VERSION:-}$COMMIT" in
*[!A-Za-z0-9._+-]*)
	echo "build.sh: VERSION (${VERSION:-}) and COMMIT ($COMMIT) may use only letters, digits and . _ + -" >&2
	exit 2
	;;
esac

pkg=github.com/fashion-classifier/fashion/internal/buildinfo
stamp="-X $pkg.Commit=$COMMIT"
if [ -n "${VERSION:-}" ]; then
	stamp="$stamp -X $pkg.Version=$VERSION"
fi
# grpcnotrace leaves out gRPC's golang.org/x/net/trace debug pages (and the
# html/template they pull in): 1.3 MB of the compressed image, unused here.
CGO_ENABLED=0 go build \
	-tags grpcnotrace \
	-trimpath \
	-buildvcs=false \
	-ldflags="-s -w $stamp" \
	-o "$out" \
	./cmd/fashion
