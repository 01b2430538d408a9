#!/bin/bash
# setup.sh - install ndump on Debian 12 (run as root), then run the demo or the tests.
#
#   ./setup.sh install        Debian packages (APT_PACKAGES below), a virtual environment
#                             in /opt/ndump with the dependencies and this checkout's ndump,
#                             /usr/local/bin/ndump, the man pages and the shell completions;
#                             and amndump(8) for Amanda; does nothing that is already done
#   ./setup.sh demo           install, then a real dump and restore of a copy of /etc
#   ./setup.sh test [ARGS]    install, then `pytest -q -ra tests [ARGS]` and `lint-imports`
#                             with this checkout's code
#
# Works from any current directory. PYTHON=/path/to/python3 creates the virtual environment
# with another interpreter (default: Debian's /usr/bin/python3); NDUMP_VENV=DIR puts it
# elsewhere. The system Python is never pip-installed into (PEP 668).
set -euo pipefail
umask 022                           # the venv, man pages and completions are for every user

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${NDUMP_VENV:-/opt/ndump}
PY=${PYTHON:-/usr/bin/python3}
BIN_LINK=/usr/local/bin/ndump
MAN_DIR=/usr/local/share/man/man8
BASH_COMPLETIONS=/usr/share/bash-completion/completions
ZSH_COMPLETIONS=/usr/local/share/zsh/site-functions
FISH_COMPLETIONS=/usr/share/fish/vendor_completions.d
LOG=/var/log/ndump-setup.log
[ -w /var/log ] || LOG=$HOME/.ndump-setup.log
# One package a line, so that a change adds a line. Debian's python3, python3-venv and
# python3-dev are added when PYTHON is not given (pylibacl compiles with gcc, libacl1-dev and
# the interpreter's headers).
APT_PACKAGES=(
    dump
    acl
    attr
    btrfs-progs
    e2fsprogs
    xfsprogs
    lvm2
    mt-st
    libacl1-dev
    gcc
    groff-base
    man-db
    bash-completion
    # amndump, the Amanda application (amndump(8)): Amanda itself, sudo for its root path
    amanda-server
    amanda-client
    sudo
    # tests/vm: the qemu guest with real LVM and a real tape drive (README)
    qemu-system-x86
    mmdebstrap
)

die() { echo "setup.sh: $*" >&2; exit 1; }
say() { echo "setup.sh: $*"; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
is_root() { [ "$(id -u)" = 0 ]; }

install_apt() {
    local pkgs=("${APT_PACKAGES[@]}") missing=() p
    [ -n "${PYTHON:-}" ] || pkgs+=(python3 python3-venv python3-dev)
    for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
    if [ ${#missing[@]} -eq 0 ]; then
        say "Debian packages present"
        return 0
    fi
    is_root || die "Debian packages missing (${missing[*]}): run as root to install them"
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq >>"$LOG" 2>&1 \
        || die "apt-get update failed (log: $LOG)"
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" \
        >>"$LOG" 2>&1 || die "apt-get install ${missing[*]} failed (log: $LOG)"
}

# digest of FILES...: one line that changes when any of them does
digest() { cat "$@" | sha256sum | cut -d' ' -f1; }

# The interpreter that made the venv, by path and version: another PYTHON makes a new venv.
python_id() { "$1" -c 'import sys; print(sys.executable, sys.version)'; }

install_venv() {
    local want have deps src
    [ -x "$PY" ] || PY=$(command -v "$PY") || die "no interpreter $PY (set PYTHON)"
    want=$(python_id "$PY") || die "$PY does not run"
    have=$(cat "$VENV/.setup-python" 2>/dev/null || true)
    if [ "$want" != "$have" ] || [ ! -x "$VENV/bin/python" ]; then
        is_root || [ -w "$(dirname "$VENV")" ] || die "cannot create $VENV: run as root"
        say "python -m venv $VENV ($PY)"
        rm -rf "$VENV"
        "$PY" -m venv "$VENV" >>"$LOG" 2>&1 || die "$PY -m venv $VENV failed (log: $LOG)"
        echo "$want" >"$VENV/.setup-python"
    fi
    # dependencies (and what builds ndump): again only when pyproject.toml changed
    deps=$(digest "$REPO/pyproject.toml")
    if [ "$deps" != "$(cat "$VENV/.setup-deps" 2>/dev/null || true)" ]; then
        local reqs
        mapfile -t reqs < <("$VENV/bin/python" -c '
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(p["build-system"]["requires"] + ["wheel"] + p["project"]["dependencies"]
                + p["project"]["optional-dependencies"]["test"]))' "$REPO/pyproject.toml")
        say "pip install ${reqs[*]} into $VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${reqs[@]}" >>"$LOG" 2>&1 \
            || die "pip install into $VENV failed (log: $LOG)"
        echo "$deps" >"$VENV/.setup-deps"
    fi
    # this checkout's ndump, copied (not editable: the program must not live in the checkout,
    # which may be under /root); again only when its sources changed
    src=$(cd "$REPO" && find pyproject.toml README.md ndump -name __pycache__ -prune -o -type f -print0 \
          | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
    if [ "$src" != "$(cat "$VENV/.setup-ndump" 2>/dev/null || true)" ]; then
        local build
        build=$(mktemp -d)
        cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/ndump" "$build/"
        find "$build" -name __pycache__ -prune -exec rm -rf {} +
        say "pip install ndump from $REPO into $VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
            --no-build-isolation "$build" >>"$LOG" 2>&1 \
            || { rm -rf "$build"; die "pip install ndump into $VENV failed (log: $LOG)"; }
        rm -rf "$build"
        echo "$src" >"$VENV/.setup-ndump"
    fi
}

# amndump(8): the plugin where Amanda looks for it, the one sudoers rule that lets
# Amanda's user (backup) run it as root, and its state directory
install_amndump() {
    local app=/usr/lib/amanda/application/amndump rule=/etc/sudoers.d/amndump
    [ -d "${app%/*}" ] || { say "no Amanda client (${app%/*}): amndump not installed"; return 0; }
    [ "$(id -u)" = 0 ] || { say "not root: amndump not installed"; return 0; }
    if ! cmp -s "$REPO/scripts/amndump" "$app" || ! cmp -s "$REPO/contrib/amndump.sudoers" "$rule"; then
        say "install $app and $rule"
        visudo -cqf "$REPO/contrib/amndump.sudoers" || die "contrib/amndump.sudoers does not parse"
        command install -o root -g root -m 0755 "$REPO/scripts/amndump" "$app"
        command install -o root -g root -m 0440 "$REPO/contrib/amndump.sudoers" "$rule"
    fi
    command install -d -o root -g root -m 0700 /var/lib/amanda/ndump
}

# /usr/local/bin/ndump, the man pages with the version filled in, the shell completions
install_files() {
    local tmp page f
    is_root || { say "not root: $BIN_LINK, man pages and completions left as they are"; return 0; }
    ln -sfn "$VENV/bin/ndump" "$BIN_LINK"
    tmp=$(mktemp -d)
    "$VENV/bin/python" "$REPO/scripts/build_man.py" "$tmp" >/dev/null || { rm -rf "$tmp"; die "build_man.py failed"; }
    mkdir -p "$MAN_DIR"
    for page in "$tmp"/*.8; do
        cmp -s "$page" "$MAN_DIR/${page##*/}" || install -m 644 "$page" "$MAN_DIR/"
    done
    rm -rf "$tmp"
    mkdir -p "$BASH_COMPLETIONS" "$ZSH_COMPLETIONS"
    install -m 644 "$REPO/completions/ndump.bash" "$BASH_COMPLETIONS/ndump"
    install -m 644 "$REPO/completions/_ndump" "$ZSH_COMPLETIONS/_ndump"
    if [ -d "${FISH_COMPLETIONS%/*}" ]; then
        mkdir -p "$FISH_COMPLETIONS"
        install -m 644 "$REPO/completions/ndump.fish" "$FISH_COMPLETIONS/ndump.fish"
    fi
    # the program must run for every user: a venv made from an interpreter under /root does not
    if ! setpriv --reuid 65534 --regid 65534 --clear-groups "$BIN_LINK" --version >/dev/null 2>&1; then
        say "warning: $BIN_LINK does not run for uid 65534 (is $PY readable by every user?)"
    fi
}

setup_all() {
    [ -e "$LOG" ] || : >"$LOG"
    echo "--- $(date): setup.sh $CMD" >>"$LOG"
    install_apt
    install_venv
    install_files
    install_amndump
    say "ndump $("$VENV/bin/ndump" --version 2>/dev/null | awk '{print $NF}') in $VENV, on PATH as $BIN_LINK"
}

# run CMD...: show it, then run it
run() { echo "+ $*"; "$@"; }

demo() {
    local t ndump=$BIN_LINK
    is_root || ndump=$VENV/bin/ndump
    DEMO_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ndump-demo.XXXXXX")
    trap 'rm -rf "$DEMO_DIR"' EXIT
    t=$DEMO_DIR
    export NDUMP_STATE_DIR=$t/state NDUMP_RUN_DIR=$t/run NDUMP_DUMPDATES=$t/state/dumpdates
    unset TAPE RSH RMT
    echo "demo: state in $t (NDUMP_STATE_DIR, NDUMP_RUN_DIR, NDUMP_DUMPDATES point there)"
    mkdir "$t/tree" "$t/out"
    run cp -a /etc "$t/tree/etc"
    [ -d /usr/share/doc/dump ] && run cp -a /usr/share/doc/dump "$t/tree/doc-dump"
    echo "demo: the tree holds $(find "$t/tree" | wc -l) entries, $(du -sh "$t/tree" | cut -f1)"
    run "$ndump" dump -0 -f "$t/demo.dump" "$t/tree"
    ls -l "$t/demo.dump"
    run "$ndump" restore -t -f "$t/demo.dump" >"$t/listing"
    head -n 8 "$t/listing"
    echo "... ($(wc -l <"$t/listing") lines)"
    run "$ndump" restore -r -f "$t/demo.dump" --target "$t/out"
    run diff -r --no-dereference -x restoresymtable "$t/tree" "$t/out"
    echo "demo: OK - the restored tree is identical to the original (diff -r)"
}

# Tests run this checkout's code: `python -m pytest` from the checkout puts it first on
# sys.path, and the CLI tests run `python -m ndump` with PYTHONPATH set to it. Their
# temporary files go in one directory, removed afterwards unless a test failed.
run_tests() {
    local rc=0 base
    cd "$REPO"
    base=$(mktemp -d "${TMPDIR:-/tmp}/ndump-tests.XXXXXX")
    say "python -m pytest -q -ra tests $* ($VENV/bin/python, temporary files in $base)"
    "$VENV/bin/python" -m pytest -q -ra --basetemp="$base" tests "$@" || rc=$?
    if [ "$rc" -eq 0 ]; then rm -rf "$base"; else say "kept $base for the failed tests"; fi
    say "lint-imports"
    "$VENV/bin/lint-imports" || { [ "$rc" -ne 0 ] || rc=1; }
    return "$rc"
}

cmd=${1:-}; CMD="$*"
[ $# -gt 0 ] && shift
case "$cmd" in
    install) setup_all ;;
    demo) setup_all; demo ;;
    test) setup_all; run_tests "$@" ;;
    *) echo "usage: $0 install | demo | test [pytest args]" >&2; exit 1 ;;
esac
