#!/usr/bin/env bash
# make release: tether-agent for linux/amd64 and linux/arm64 (static,
# stripped, version stamped), each with its systemd unit and install.sh, in
# reproducible archives, plus SHA256SUMS.
#   usage: release.sh VERSION OUTDIR
set -euo pipefail
version=${1:?usage: release.sh VERSION OUTDIR}
out=${2:?usage: release.sh VERSION OUTDIR}
if ! [[ "$version" =~ ^v?[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$ ]]; then
    echo "release.sh: version $version: want letters, digits and . _ + - (e.g. v0.4.0)" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -f "$out"/tether-agent_*_linux_*.tar.gz "$out/SHA256SUMS"
for arch in amd64 arm64; do
    name="tether-agent_${version}_linux_${arch}"
    dir="$work/$name"
    mkdir -p "$dir"
    (cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath \
        -ldflags "-s -w -X main.version=$version" -o "$dir/tether-agent" ./agent/cmd/tether-agent)
    install -m 0644 "$root/agent/packaging/tether-agent.service" "$dir/tether-agent.service"
    install -m 0755 "$root/agent/packaging/install.sh" "$dir/install.sh"
    # The same inputs give the same bytes: sorted names, no owners, no times.
    tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - "$name" |
        gzip -n -9 >"$out/$name.tar.gz"
done
(cd "$out" && sha256sum tether-agent_"${version}"_linux_*.tar.gz >SHA256SUMS)
cat "$out/SHA256SUMS"
