#!/bin/bash
# setup.sh - install what ndump needs on Debian 12 (run as root), then run the demo or the tests.
#
#   ./setup.sh install        Debian packages (stock dump/restore, acl, attr, btrfs-progs,
#                             e2fsprogs, xfsprogs, lvm2, mt-st, libacl1-dev, gcc, groff-base)
#                             and `pip install -e '.[test]'`; does nothing that is already done
#   ./setup.sh demo           install, then a real dump and restore of a copy of /etc
#   ./setup.sh test [ARGS]    install, then `pytest -q -ra tests [ARGS]` and `lint-imports`
#
# Works from any current directory. Set PYTHON to use another interpreter.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-$(command -v python3 || command -v python || true)}
LOG=${TMPDIR:-/tmp}/ndump-setup.log
APT_PACKAGES=(dump acl attr btrfs-progs e2fsprogs xfsprogs lvm2 mt-st libacl1-dev gcc groff-base qemu-system-x86 mmdebstrap)

die() { echo "setup.sh: $*" >&2; exit 1; }
say() { echo "setup.sh: $*"; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

install_apt() {
    local pkgs=("${APT_PACKAGES[@]}") missing=() p
    # python3-dev only where Debian's own python3 is already installed: elsewhere (a pyenv
    # or other non-Debian Python) it would pull in a second Python, and pylibacl builds
    # with libacl1-dev, gcc and the running Python's own headers.
    if installed python3; then pkgs+=(python3-dev); fi
    for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
    if [ ${#missing[@]} -eq 0 ]; then
        say "Debian packages present"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "Debian packages missing (${missing[*]}): run as root to install them"
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >>"$LOG" 2>&1 || die "apt-get update failed (log: $LOG)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1 \
        || die "apt-get install ${missing[*]} failed (log: $LOG)"
}

install_pip() {
    [ -n "$PY" ] || die "no python3 on PATH"
    say "pip install -e '.[test]' ($PY)"
    "$PY" -m pip install -q --disable-pip-version-check -e "$REPO[test]" >>"$LOG" 2>&1 \
        || die "pip install -e '$REPO[test]' failed (log: $LOG)"
    BIN=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
}

install() {
    : >"$LOG"
    install_apt
    install_pip
}

# run CMD...: show it, then run it
run() { echo "+ $*"; "$@"; }

demo() {
    local t ndump
    DEMO_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ndump-demo.XXXXXX")
    trap 'rm -rf "$DEMO_DIR"' EXIT
    t=$DEMO_DIR
    export NDUMP_STATE_DIR=$t/state NDUMP_RUN_DIR=$t/run NDUMP_DUMPDATES=$t/state/dumpdates
    unset TAPE RSH RMT
    if [ -x "$BIN/ndump" ]; then ndump=$BIN/ndump; else ndump="$PY -m ndump"; fi
    echo "demo: state in $t (NDUMP_STATE_DIR, NDUMP_RUN_DIR, NDUMP_DUMPDATES point there)"
    mkdir "$t/tree" "$t/out"
    run cp -a /etc "$t/tree/etc"
    [ -d /usr/share/doc/dump ] && run cp -a /usr/share/doc/dump "$t/tree/doc-dump"
    echo "demo: the tree holds $(find "$t/tree" | wc -l) entries, $(du -sh "$t/tree" | cut -f1)"
    run $ndump dump -0 -f "$t/demo.dump" "$t/tree"
    ls -l "$t/demo.dump"
    run $ndump restore -t -f "$t/demo.dump" >"$t/listing"
    head -n 8 "$t/listing"
    echo "... ($(wc -l <"$t/listing") lines)"
    run $ndump restore -r -f "$t/demo.dump" --target "$t/out"
    run diff -r --no-dereference -x restoresymtable "$t/tree" "$t/out"
    echo "demo: OK - the restored tree is identical to the original (diff -r)"
}

run_tests() {
    local rc=0
    cd "$REPO"
    say "python -m pytest -q -ra tests $*"
    "$PY" -m pytest -q -ra tests "$@" || rc=$?
    say "lint-imports"
    "$BIN/lint-imports" || { [ "$rc" -ne 0 ] || rc=1; }
    return "$rc"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    install) install ;;
    demo) install; demo ;;
    test) install; run_tests "$@" ;;
    *) echo "usage: $0 install | demo | test [pytest args]" >&2; exit 1 ;;
esac
