#!/bin/sh
# Installs tether-agent on an ECS container instance from a release archive
# (make release): the binary as /usr/local/bin/tether-agent, where tether's
# SSM documents run it, and its systemd unit, started before ecs.service so
# the instance registers ecs.capability.docker-plugin.tether.
#
#   usage: install.sh [--no-start]
#
# In user data (runs before the ECS agent starts), for the instance's arch:
#   curl -fsSL "$URL/tether-agent_${V}_linux_$(uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/').tar.gz" | tar -xz -C /tmp && /tmp/tether-agent_*/install.sh
# Run again to upgrade: the binary is replaced atomically and the plugin
# restarted (containers keep their volumes: serve adopts them at start).
# An ECS agent that is already running is restarted, since it computes the
# instance's capabilities only when it starts.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
start=yes
for arg in "$@"; do
    case "$arg" in
    --no-start) start=no ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $arg (want --no-start)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root" >&2
    exit 1
fi

# The binary must run here (right architecture) before anything changes.
if ! version=$("$here/tether-agent" version --json 2>&1); then
    echo "install.sh: $here/tether-agent does not run on this $(uname -m) host: $version" >&2
    exit 1
fi
missing=""
for tool in blkid mkfs.ext4 mkfs.xfs e2fsck resize2fs xfs_growfs xfs_repair; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "install.sh: missing on this host:$missing (install e2fsprogs and xfsprogs)" >&2
    exit 1
fi

install -d -m 0755 /usr/local/bin /etc/systemd/system
install -m 0755 "$here/tether-agent" /usr/local/bin/.tether-agent.new
mv -f /usr/local/bin/.tether-agent.new /usr/local/bin/tether-agent
install -m 0644 "$here/tether-agent.service" /etc/systemd/system/tether-agent.service
echo "installed /usr/local/bin/tether-agent $version"

if [ "$start" = no ]; then
    exit 0
fi
systemctl daemon-reload
systemctl enable tether-agent
systemctl restart tether-agent
if systemctl is-active --quiet ecs; then
    systemctl restart ecs
fi
echo "tether-agent running; ECS places tether tasks here once its agent has (re)started"
