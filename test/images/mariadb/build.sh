#!/usr/bin/env bash
# Builds the demo's "mysql" image: MariaDB from Debian bookworm, trimmed, with
# entrypoint.sh, as a `docker load` archive that names itself mysql:latest and
# carries the entrypoint (a `docker import`ed rootfs would run `sh` and exit,
# since ECS runs the image with no command, as the seed's task definition does).
# Cached: a second run prints the cached archive's path at once.
#   usage: build.sh [CACHE_DIR]   (default ~/.cache/tether)
# Prints the archive's path on stdout; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/tether}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
version=5 # bump when the recipe changes
image="$cache/mysql-image-v$version.tar"
if [ -s "$image" ]; then echo "$image"; exit 0; fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/mariadb-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 143' TERM INT # so the EXIT trap runs when the build is cancelled
echo "building the mysql image (debootstrap of mariadb-server from Debian bookworm, about a minute)..." >&2
debootstrap --variant=minbase --include=mariadb-server bookworm "$work/rootfs" "$mirror" >"$work/log" 2>&1 || {
    tail -20 "$work/log" >&2; exit 1; }
r="$work/rootfs"
# Trim what a server never reads (~600 MB → ~300 MB); vfs copies the image per container.
rm -rf "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/* "$r"/usr/share/doc "$r"/usr/share/man \
    "$r"/usr/share/info "$r"/usr/share/locale "$r"/usr/share/lintian "$r"/usr/share/bash-completion \
    "$r"/usr/lib/x86_64-linux-gnu/perl "$r"/usr/share/perl "$r"/usr/share/perl5 "$r"/var/log/*
for tool in aria_chk aria_dump_log aria_ftdump aria_pack aria_read_log myisamchk myisam_ftdump \
    myisamlog myisampack mariadb-binlog mariadb-slap mariadb-upgrade mariadb-dump mariadb-import \
    mariadb-check mariadb-show mariadb-conv mariadb-plugin innochecksum mbstream mariadb-backup; do
    rm -f "$r/usr/bin/$tool"
done
install -m 0755 "$here/entrypoint.sh" "$r/usr/local/bin/docker-entrypoint.sh"

# The archive: one layer (the rootfs), an image config with the entrypoint,
# and manifest.json naming mysql:latest (the format `docker save` writes).
a="$work/archive"
mkdir -p "$a/layer"
tar -C "$r" --numeric-owner -cf "$a/layer/layer.tar" .
diff_id=$(sha256sum "$a/layer/layer.tar" | cut -d' ' -f1)
mv "$a/layer" "$a/$diff_id"
arch=$(dpkg --print-architecture)
printf '%s' '{"architecture":"'"$arch"'","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":["/usr/local/bin/docker-entrypoint.sh"],"ExposedPorts":{"3306/tcp":{}},"StopSignal":"SIGTERM","WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:'"$diff_id"'"]},"history":[{"created_by":"test/images/mariadb/build.sh (debootstrap bookworm mariadb-server)"}]}' >"$a/config.json"
config_id=$(sha256sum "$a/config.json" | cut -d' ' -f1)
mv "$a/config.json" "$a/$config_id.json"
printf '%s' '[{"Config":"'"$config_id"'.json","RepoTags":["mysql:latest"],"Layers":["'"$diff_id"'/layer.tar"]}]' >"$a/manifest.json"
tar -C "$a" -cf "$image.tmp" manifest.json "$config_id.json" "$diff_id"
mv "$image.tmp" "$image"
# Earlier recipes' images (~300 MB each) are of no further use.
for old in "$cache"/mariadb-rootfs-v*.tar "$cache"/mysql-image-v*.tar; do
    if [ -e "$old" ] && [ "$old" != "$image" ]; then rm -f "$old"; fi
done
echo "$image"
