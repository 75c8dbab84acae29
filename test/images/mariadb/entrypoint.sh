#!/bin/sh
# Entrypoint of the demo's "mysql" image (MariaDB from Debian, docker-imported).
# Honours MYSQL_ROOT_PASSWORD like the official image, and initialises the
# data directory only when it is empty: a volume that already holds a
# database is used as it is.
set -eu
datadir=/var/lib/mysql
mkdir -p "$datadir" /run/mysqld
chown mysql:mysql /run/mysqld

# lost+found is what a fresh ext4 filesystem holds: still "empty".
if [ -z "$(ls -A "$datadir" | grep -v '^lost+found$' || true)" ]; then
    if [ -z "${MYSQL_ROOT_PASSWORD:-}" ] && [ -z "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" ]; then
        echo "entrypoint: database is uninitialized and MYSQL_ROOT_PASSWORD is not set" >&2
        exit 1
    fi
    echo "entrypoint: initialising an empty data directory in $datadir"
    chown mysql:mysql "$datadir"
    mariadb-install-db --user=mysql --datadir="$datadir" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve >/dev/null
    init=/run/mysqld/init.sql
    pw=$(printf '%s' "${MYSQL_ROOT_PASSWORD:-}" | sed "s/'/''/g")
    cat > "$init" <<SQL
CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$pw';
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
ALTER USER IF EXISTS 'root'@'localhost' IDENTIFIED BY '$pw';
ALTER USER IF EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '$pw';
ALTER USER IF EXISTS 'root'@'::1' IDENTIFIED BY '$pw';
FLUSH PRIVILEGES;
SQL
    chown mysql:mysql "$init"
    set -- --init-file="$init" "$@"
else
    echo "entrypoint: using the existing database in $datadir"
fi
chown -R mysql:mysql "$datadir"
exec mariadbd --user=mysql --datadir="$datadir" --bind-address=0.0.0.0 --port="${MYSQL_PORT:-3306}" \
    --skip-name-resolve --socket=/run/mysqld/mysqld.sock "$@"
