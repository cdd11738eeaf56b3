#!/usr/bin/env bash
# Builds the netsnap-collect container image, reproducibly, without pulling any
# base image: FROM scratch + the static collector + Debian's busybox-static.
#
# Usage: deploy/image/build.sh [--no-build]
#   --no-build  use dist/x86_64-unknown-linux-musl/netsnap-collect as it is
# Name and tag: deploy/kustomization.yaml (images[0].newName/newTag), the only place.
# Output: the image in local container storage (buildah/podman) as NAME:TAG, and
#         dist/image/netsnap-collect-TAG.oci.tar (OCI archive) with its digest in
#         dist/image/netsnap-collect-TAG.digest.
# Needs: buildah (Debian package), apt-get (for busybox-static), scripts/build-static's needs.
# Reproducible: file times are clamped to SOURCE_DATE_EPOCH (default: the commit
# time of HEAD) and the image is committed with --timestamp, so the same binary
# and busybox version give the same image digest.
set -euo pipefail
cd "$(dirname "$0")/../.."

kustomization=deploy/kustomization.yaml
name=$(sed -n 's/^ *newName: *//p' "$kustomization" | head -1)
tag=$(sed -n 's/^ *newTag: *//p' "$kustomization" | head -1)
[ -n "$name" ] && [ -n "$tag" ] || { echo "build.sh: no newName/newTag in $kustomization" >&2; exit 2; }
target=x86_64-unknown-linux-musl
bin=dist/$target/netsnap-collect
out=dist/image
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
storage=()
[ -n "${BUILDAH_STORAGE_DRIVER:-}" ] && storage=(--storage-driver "$BUILDAH_STORAGE_DRIVER")

command -v buildah >/dev/null || { echo "build.sh: buildah not found: apt-get install buildah" >&2; exit 2; }
if [ "${1:-}" != "--no-build" ]; then
  scripts/build-static "$target"
fi
[ -x "$bin" ] || { echo "build.sh: $bin missing: run scripts/build-static" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# busybox-static from Debian's archive (apt verifies its signature).
(cd "$work" && apt-get download -qq busybox-static)
deb=$(ls "$work"/busybox-static_*.deb)
dpkg-deb -x "$deb" "$work/deb"
ctx=$work/ctx
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/bin" "$ctx/rootfs/tmp" "$ctx/rootfs/host"
install -m 0755 "$bin" "$ctx/rootfs/usr/local/bin/netsnap-collect"
install -m 0755 "$work/deb/bin/busybox" "$ctx/rootfs/bin/busybox"
for applet in sh sleep tar cat ls; do ln -s busybox "$ctx/rootfs/bin/$applet"; done
chmod 1777 "$ctx/rootfs/tmp"
cp deploy/image/Containerfile "$ctx/Containerfile"
find "$ctx" -exec touch -h -d "@$epoch" {} +

buildah "${storage[@]}" bud --quiet --timestamp "$epoch" --layers=false \
  --label "org.opencontainers.image.version=$tag" \
  --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --label "netsnap.busybox=$(dpkg-deb -f "$deb" Version)" \
  -f "$ctx/Containerfile" -t "$name:$tag" "$ctx" >/dev/null
mkdir -p "$out"
archive=$out/netsnap-collect-$tag.oci.tar
rm -f "$archive"
buildah "${storage[@]}" push --quiet "$name:$tag" "oci-archive:$archive:$name:$tag"
digest=$(buildah "${storage[@]}" inspect --format '{{.FromImageDigest}}' "$name:$tag")
echo "$digest" >"$out/netsnap-collect-$tag.digest"
echo "build.sh: $name:$tag $digest" >&2
echo "build.sh: $archive ($(stat -c %s "$archive") bytes)" >&2
