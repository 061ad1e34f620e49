#!/usr/bin/env bash
# The one command that runs tinbao's whole test suite:  bash tests/run.sh [extra cargo test args]
#
# On a fresh Debian 12 machine with only the Rust toolchain it installs what the tests need
# (chromium, chromium-driver, python3-aiosmtpd, postgresql; systemd, caddy and nginx to check
# the files in deploy/ with their own validators), makes sure PostgreSQL answers on
# 127.0.0.1:5432, then runs rustfmt, clippy and every test target, then the API conformance
# check (schemathesis against the binary, tests/schemathesis/run.sh); with TINBAO_FUZZ=1 also
# a bounded run of every fuzz target (fuzz/ci.sh). Idempotent, and quick when everything is
# already in place.
# Extra arguments are passed to `cargo test`,
# e.g.  bash tests/run.sh browser -- --nocapture
# TINBAO_SKIP_SCHEMATHESIS=1 skips the conformance check (CI runs it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

START_TS=$(date +%s)
section() {
    printf '\n========== %s  (+%ss) ==========\n' "$*" "$(($(date +%s) - START_TS))"
}
die() {
    printf 'tests/run.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

# Root runs commands directly; otherwise use sudo when there is one.
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        if [ -t 0 ]; then SUDO=(sudo); else SUDO=(sudo -n); fi
    fi
fi
as_root() {
    if [ "${#SUDO[@]}" -gt 0 ]; then "${SUDO[@]}" "$@"; else "$@"; fi
}

# ---------------------------------------------------------------------------------------------
section "System packages"

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
pg_server_present() {
    command -v psql >/dev/null 2>&1 &&
        command -v pg_ctlcluster >/dev/null 2>&1 &&
        compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

# Is the database local (ours to install and start)? Only a preset URL to another host is not.
MANAGE_PG=1
if [ -n "${TEST_DATABASE_URL:-}" ]; then
    case "$TEST_DATABASE_URL" in
        *@127.0.0.1[:/]* | *@127.0.0.1 | *@localhost[:/]* | *@localhost | *@\[::1\]*) ;;
        *) MANAGE_PG=0 ;;
    esac
fi

missing=()
[ -x /usr/bin/chromium ] && pkg_installed chromium || missing+=(chromium)
[ -x /usr/bin/chromedriver ] && pkg_installed chromium-driver || missing+=(chromium-driver)
pkg_installed python3-aiosmtpd || missing+=(python3-aiosmtpd)
# schemathesis goes into a venv of its own (tests/schemathesis/run.sh).
pkg_installed python3-venv || missing+=(python3-venv)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "$MANAGE_PG" = 1 ] && ! pg_server_present; then
    missing+=(postgresql)
elif ! command -v psql >/dev/null 2>&1; then
    missing+=(postgresql-client)
fi

# The deploy/ files' validators (tests/api/deploy.rs): systemd-analyze, caddy, nginx. The
# proxies are servers that Debian starts on install (both on port 80); they are installed
# without starting and left disabled, since the tests only run their config checks.
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
proxies=()
command -v caddy >/dev/null 2>&1 || proxies+=(caddy)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || proxies+=(nginx)

apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
apt_updated=0
apt_install() {
    if [ "$(id -u)" -ne 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
        die "not root and no sudo: install these Debian packages by hand: $*"
    fi
    if [ "$apt_updated" = 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update -q </dev/null ||
            echo "warning: apt-get update failed; trying to install anyway" >&2
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -q \
        --no-install-recommends "$@" </dev/null ||
        die "apt-get install $* failed"
}

if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt_install "${missing[@]}"
else
    echo "all present: chromium, chromium-driver, python3-aiosmtpd, systemd-analyze$([ "$MANAGE_PG" = 1 ] && echo ', postgresql')"
fi

if [ "${#proxies[@]}" -gt 0 ]; then
    echo "installing without starting: ${proxies[*]}"
    # policy-rc.d answering 101 keeps invoke-rc.d and deb-systemd-invoke from starting the
    # services; an existing one (a container's) is left as it is.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if ! as_root test -e "$policy"; then
        printf '#!/bin/sh\n# tests/run.sh: no service starts while it installs packages\nexit 101\n' |
            as_root tee "$policy" >/dev/null
        as_root chmod 0755 "$policy"
        own_policy=1
    fi
    status=0
    (apt_install "${proxies[@]}") || status=$?
    [ "$own_policy" = 1 ] && as_root rm -f "$policy"
    [ "$status" = 0 ] || exit "$status"
    if [ -d /run/systemd/system ]; then
        for unit in "${proxies[@]}"; do
            as_root systemctl disable --now "$unit" >/dev/null 2>&1 || true
        done
    fi
else
    echo "all present: caddy, nginx"
fi

# ---------------------------------------------------------------------------------------------
section "PostgreSQL"

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

pg_can_connect() {
    PGCONNECT_TIMEOUT=5 psql "$TEST_DATABASE_URL" -w -X -q -A -t -c 'select 1' >/dev/null 2>&1
}

if [ "$MANAGE_PG" = 1 ]; then
    # The cluster: Debian normally creates "main" on install; make one if it did not.
    PG_VER="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -z "$PG_VER" ] || [ ! -d "/etc/postgresql/$PG_VER/main" ]; then
        PG_VER="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
        echo "creating cluster $PG_VER/main"
        as_root pg_createcluster --port 5432 "$PG_VER" main
    fi
    PG_CONF_DIR="/etc/postgresql/$PG_VER/main"

    if ! pg_isready -q -h 127.0.0.1 -p 5432 -t 2; then
        echo "starting cluster $PG_VER/main"
        # "already running" is fine (exit 2); anything else shows up in the wait below.
        as_root pg_ctlcluster --skip-systemctl-redirect "$PG_VER" main start || true
    fi

    for _ in $(seq 1 60); do
        pg_isready -q -h 127.0.0.1 -p 5432 -t 1 && break
        sleep 0.5
    done
    if ! pg_isready -h 127.0.0.1 -p 5432 -t 1; then
        pg_lsclusters >&2 || true
        as_root tail -n 30 "/var/log/postgresql/postgresql-$PG_VER-main.log" >&2 || true
        die "PostgreSQL is not accepting connections on 127.0.0.1:5432 after 30s"
    fi

    # A fresh install asks for a password over TCP (scram-sha-256); tests connect as postgres
    # without one, so trust the postgres user from loopback only. Done once, only if needed.
    if ! pg_can_connect; then
        HBA="$PG_CONF_DIR/pg_hba.conf"
        if ! as_root grep -q '^# tinbao tests:' "$HBA"; then
            echo "allowing passwordless TCP logins as postgres from loopback in $HBA"
            tmp="$(mktemp)"
            {
                echo '# tinbao tests: passwordless loopback logins for the postgres user (tests/run.sh)'
                echo 'host    all    postgres    127.0.0.1/32    trust'
                echo 'host    all    postgres    ::1/128         trust'
                as_root cat "$HBA"
            } >"$tmp"
            as_root cp "$tmp" "$HBA"
            rm -f "$tmp"
            as_root pg_ctlcluster --skip-systemctl-redirect "$PG_VER" main reload
            sleep 1
        fi
    fi
fi

for _ in $(seq 1 20); do
    pg_can_connect && break
    sleep 0.5
done
if ! pg_can_connect; then
    PGCONNECT_TIMEOUT=5 psql "$TEST_DATABASE_URL" -w -X -c 'select 1' || true
    die "cannot connect to TEST_DATABASE_URL=$TEST_DATABASE_URL"
fi
echo "TEST_DATABASE_URL=$TEST_DATABASE_URL  ($(psql "$TEST_DATABASE_URL" -w -X -A -t -c 'show server_version'))"

# ---------------------------------------------------------------------------------------------
section "Environment"

export TINBAO_CHROMIUM="${TINBAO_CHROMIUM:-/usr/bin/chromium}"
export TINBAO_CHROMEDRIVER="${TINBAO_CHROMEDRIVER:-/usr/bin/chromedriver}"
# This script installs the browser, so browser tests must run here, never skip.
export TINBAO_REQUIRE_BROWSER="${TINBAO_REQUIRE_BROWSER:-1}"
[ -x "$TINBAO_CHROMIUM" ] || die "TINBAO_CHROMIUM=$TINBAO_CHROMIUM is not executable"
[ -x "$TINBAO_CHROMEDRIVER" ] || die "TINBAO_CHROMEDRIVER=$TINBAO_CHROMEDRIVER is not executable"
echo "TINBAO_CHROMIUM=$TINBAO_CHROMIUM  ($("$TINBAO_CHROMIUM" --version 2>/dev/null | head -n 1))"
echo "TINBAO_CHROMEDRIVER=$TINBAO_CHROMEDRIVER  ($("$TINBAO_CHROMEDRIVER" --version 2>/dev/null | head -n 1))"
# Debian's python3-aiosmtpd is for /usr/bin/python3 (a `python3` earlier in PATH, e.g. pyenv's,
# does not see it): email tests run `$TINBAO_PYTHON -m aiosmtpd -n -l 127.0.0.1:PORT`.
export TINBAO_PYTHON="${TINBAO_PYTHON:-/usr/bin/python3}"
"$TINBAO_PYTHON" -c 'import aiosmtpd' 2>/dev/null || die "$TINBAO_PYTHON cannot import aiosmtpd"
echo "TINBAO_PYTHON=$TINBAO_PYTHON  (aiosmtpd $("$TINBAO_PYTHON" -c 'import aiosmtpd; print(aiosmtpd.__version__)'))"
cargo --version
cargo fmt --version >/dev/null 2>&1 || die "rustfmt is missing (rustup component add rustfmt)"
cargo clippy --version >/dev/null 2>&1 || die "clippy is missing (rustup component add clippy)"

# ---------------------------------------------------------------------------------------------
section "cargo fmt --all -- --check"
cargo fmt --all -- --check

section "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

section "cargo test $*"
cargo test "$@"

# ---------------------------------------------------------------------------------------------
if [ "${TINBAO_SKIP_SCHEMATHESIS:-0}" = 1 ]; then
    section "API conformance (schemathesis): skipped (TINBAO_SKIP_SCHEMATHESIS=1)"
else
    section "API conformance: schemathesis against the binary"
    bash tests/schemathesis/run.sh
fi

# ---------------------------------------------------------------------------------------------
# The fuzz targets' corpora are replayed by `cargo test` above (tests/api/fuzz_corpus.rs). A
# libFuzzer run needs its own cold build (about 28 CPU-minutes), too long for every CI run:
# TINBAO_FUZZ=1 adds each target for FUZZ_SECONDS (default 25).
if [ "${TINBAO_FUZZ:-0}" = 1 ]; then
    section "Fuzz targets, ${FUZZ_SECONDS:-25}s each (fuzz/ci.sh)"
    bash fuzz/ci.sh
fi

section "All checks passed"
