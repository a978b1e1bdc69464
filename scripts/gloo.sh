#!/usr/bin/env bash
# Gloo's headers, which the torch wheel's c10d headers include but the wheel does not ship, for
# compiling src/train/dist/c10d.cpp (build.rs). Debian's libgloo-dev (headers only; the code
# itself is the copy inside libtorch_cpu), pinned by version and checksum, unpacked into .cache/gloo.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.cache/gloo
[ -e "$DEST/usr/include/gloo/context.h" ] && exit 0
DEB=libgloo-dev_0.0~git20220518.5b14351-3_amd64.deb
SHA=80529c9fd8af452faf489e686b94bf87075965c40673803810c4f41634b1e299
URL=${GLOO_DEB_URL:-http://deb.debian.org/debian/pool/main/g/gloo/$DEB}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching Gloo's headers ($DEB) into $DEST"
curl -fsSL --retry 3 --max-time 120 -o "$tmp/gloo.deb" "$URL" ||
  { echo "error: cannot download $URL (set GLOO_DEB_URL to a mirror of it)" >&2; exit 1; }
echo "$SHA  $tmp/gloo.deb" | sha256sum -c --quiet - ||
  { echo "error: $URL does not have the expected checksum" >&2; exit 1; }
(cd "$tmp" && ar x gloo.deb && mkdir root && tar -xf data.tar.* -C root)
mkdir -p "$DEST.tmp.$$" && cp -a "$tmp/root/usr" "$DEST.tmp.$$/" && rm -rf "$DEST" && mv "$DEST.tmp.$$" "$DEST"
