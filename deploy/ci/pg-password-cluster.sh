#!/bin/sh
# pg-password-cluster.sh: a throwaway PostgreSQL cluster with password
# (scram-sha-256) authentication for sqlgate's SQL credential tests, which
# must prove that an issued password works and that a revoked or expired one
# does not. The machine's default cluster uses trust authentication, where
# any password is accepted, so it cannot prove that.
#
#   deploy/ci/pg-password-cluster.sh [start]   create (first run) or start the cluster; print shell
#                                              export lines for eval (see below)
#   deploy/ci/pg-password-cluster.sh dsn       print the DSN (postgres://...) of the running cluster
#   deploy/ci/pg-password-cluster.sh stop      stop the cluster (data kept)
#   deploy/ci/pg-password-cluster.sh destroy   stop it and delete its directory
#
# Run as root (the server runs as the `postgres` OS user) or as `postgres`.
# `start` prints only these two lines on stdout, so .ci/run can do
# `eval "$(deploy/ci/pg-password-cluster.sh start)"`:
#
#   export SQLGATE_TEST_POSTGRES_PASSWORD_DSN='postgres://sqlgate_admin:...@127.0.0.1:55432/postgres?sslmode=disable'
#   export PG_PASSWORD_CLUSTER_STOP="'/path/to/pg-password-cluster.sh' destroy"
#
# and `SQLGATE_TEST_POSTGRES_PASSWORD_DSN=$(deploy/ci/pg-password-cluster.sh dsn)`
# works once it runs. Messages go to stderr.
#
# Settings (environment):
#   SQLGATE_PG_BIN           PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   SQLGATE_PG_PASSWORD_DIR  cluster directory (default /tmp/sqlgate-pg-password)
#   SQLGATE_PG_PORT          first port to try (default 55432; the next free one is used)
#
# The cluster listens on 127.0.0.1 only; every connection, TCP or socket,
# must authenticate with scram-sha-256. The superuser `sqlgate_admin` gets a
# random password, kept in DIR/dsn (mode 0600), which is test-only.
set -eu

BIN=${SQLGATE_PG_BIN:-/usr/lib/postgresql/15/bin}
DIR=${SQLGATE_PG_PASSWORD_DIR:-/tmp/sqlgate-pg-password}
PORT0=${SQLGATE_PG_PORT:-55432}
OSUSER=postgres
DATA=$DIR/data

log() { echo "pg-password-cluster: $*" >&2; }
die() { log "$*"; exit 1; }

# as_pg runs a command as the cluster's OS user.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "$OSUSER" -- "$@"
	else
		[ "$(id -un)" = "$OSUSER" ] || die "run as root or as $OSUSER"
		"$@"
	fi
}

port_free() {
	# Free when nothing accepts a TCP connection on it.
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

running() { [ -f "$DATA/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

start() {
	[ -x "$BIN/initdb" ] || die "no PostgreSQL binaries in $BIN (set SQLGATE_PG_BIN)"
	if [ ! -f "$DATA/PG_VERSION" ]; then
		mkdir -p "$DIR"
		chmod 0700 "$DIR"
		[ "$(id -u)" -eq 0 ] && chown "$OSUSER" "$DIR"
		password=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)
		[ ${#password} -ge 24 ] || die "could not generate a password"
		pwfile=$DIR/.pw
		( umask 077; printf '%s\n' "$password" >"$pwfile" )
		[ "$(id -u)" -eq 0 ] && chown "$OSUSER" "$pwfile"
		as_pg "$BIN/initdb" -D "$DATA" -U sqlgate_admin --pwfile="$pwfile" \
			--auth-host=scram-sha-256 --auth-local=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 ||
			{ rm -f "$pwfile"; die "initdb failed, see $DIR/initdb.log"; }
		rm -f "$pwfile"
		port=$PORT0
		while ! port_free "$port"; do
			port=$((port + 1))
			[ "$port" -lt $((PORT0 + 200)) ] || die "no free port from $PORT0"
		done
		# Small footprint: the test machines are shared.
		as_pg sh -c "cat >>'$DATA/postgresql.conf'" <<CONF
# sqlgate test cluster (deploy/ci/pg-password-cluster.sh)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$DIR'
password_encryption = 'scram-sha-256'
max_connections = 60
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
		( umask 077; printf 'postgres://sqlgate_admin:%s@127.0.0.1:%s/postgres?sslmode=disable\n' "$password" "$port" >"$DIR/dsn" )
		log "created cluster in $DATA (port $port, scram-sha-256)"
	fi
	if ! running; then
		as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 start >/dev/null ||
			die "server did not start, see $DIR/server.log"
		log "started"
	fi
	self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
	# The DSN and the path hold no single quote (password: A-Z a-z 0-9).
	printf "export SQLGATE_TEST_POSTGRES_PASSWORD_DSN='%s'\n" "$(cat "$DIR/dsn")"
	printf "export PG_PASSWORD_CLUSTER_STOP=\"'%s' destroy\"\n" "$self"
}

case ${1:-start} in
start) start ;;
dsn)
	running || die "not running (start it first)"
	cat "$DIR/dsn"
	;;
stop)
	if running; then
		as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
		log "stopped"
	fi
	;;
destroy)
	if running; then
		as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
	fi
	rm -rf "$DIR"
	log "removed $DIR"
	;;
*) die "usage: $0 [start|dsn|stop|destroy]" ;;
esac
