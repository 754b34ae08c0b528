#!/usr/bin/env bash
# Build the example with no network, from the Go sources Debian packages in
# /usr/share/gocode (apt-get install -y golang-go golang-google-grpc-dev
# golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev
# protoc-gen-go protoc-gen-go-grpc).
#
#   examples/go/build-offline.sh [OUTPUT]     (default: examples/go/apex-example)
#
# Module mode cannot work offline here: grpc's go.mod requires modules Debian
# does not package (envoyproxy, cncf/udpa, ...), and Go wants every go.mod in
# the graph. GOPATH mode (GO111MODULE=off) needs only the imported packages'
# sources: this script generates the code with buf (BUF=path, default: buf
# on PATH), lays the example out at its import path in a temporary GOPATH
# next to /usr/share/gocode, and builds it there.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
output=$(realpath -m "${1:-$here/apex-example}")
module=github.com/apex-grpc/apex-grpc/examples/go
gocode=${DEBIAN_GOCODE:-/usr/share/gocode}

(cd "$here" && rm -rf gen && "${BUF:-buf}" generate)

gopath=$(mktemp -d)
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/$module"
cp -r "$here"/*.go "$here/gen" "$gopath/src/$module/"
GO111MODULE=off GOPATH="$gopath:$gocode" GOFLAGS= go build -o "$output" "$module"
echo "built $output"
