#!/usr/bin/env bash
# Builds the demo's "mysql" image rootfs: MariaDB from Debian bookworm, trimmed,
# with entrypoint.sh, as a tar for `docker import`. Cached: a second run
# prints the cached tar's path at once.
#   usage: build.sh [CACHE_DIR]   (default ~/.cache/tether)
# Prints the tar's path on stdout; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/tether}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
version=4 # bump when the recipe changes
tar="$cache/mariadb-rootfs-v$version.tar"
if [ -s "$tar" ]; then echo "$tar"; exit 0; fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/mariadb-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "building the mysql image rootfs (debootstrap, about a minute)..." >&2
debootstrap --variant=minbase --include=mariadb-server bookworm "$work/rootfs" "$mirror" >"$work/log" 2>&1 || {
    tail -20 "$work/log" >&2; exit 1; }
r="$work/rootfs"
# Trim what a server never reads (~600 MB → ~250 MB); vfs copies the image per container.
rm -rf "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/* "$r"/usr/share/doc "$r"/usr/share/man \
    "$r"/usr/share/info "$r"/usr/share/locale "$r"/usr/share/lintian "$r"/usr/share/bash-completion \
    "$r"/usr/lib/x86_64-linux-gnu/perl "$r"/usr/share/perl "$r"/usr/share/perl5 "$r"/var/log/*
for tool in aria_chk aria_dump_log aria_ftdump aria_pack aria_read_log myisamchk myisam_ftdump \
    myisamlog myisampack mariadb-binlog mariadb-slap mariadb-upgrade mariadb-dump mariadb-import \
    mariadb-check mariadb-show mariadb-conv mariadb-plugin innochecksum mbstream mariadb-backup; do
    rm -f "$r/usr/bin/$tool"
done
install -m 0755 "$here/entrypoint.sh" "$r/usr/local/bin/docker-entrypoint.sh"
tar -C "$r" --numeric-owner -cf "$tar.tmp" .
mv "$tar.tmp" "$tar"
echo "$tar"
