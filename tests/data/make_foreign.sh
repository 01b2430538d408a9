#!/bin/bash
# Remake the golden images that hold what stock dump 0.4b47 writes oddly: a 255-byte name
# in a directory with entries after it (-b 10 and -b 63), and an LZO-compressed dump (-y).
# Writes l0-longname-b10.dump, l0-longname-b63.dump, l0-lzo.dump and foreign.json (what
# stock restore -t lists, and the real names) into OUTDIR. See MAKE.md.
#
#   usage (as root): tests/data/make_foreign.sh [OUTDIR]      (default: tests/data itself)
set -euo pipefail
export TZ=UTC LC_ALL=C.UTF-8

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$(realpath -m "${1:-$HERE}")
W=$(mktemp -d /tmp/make-foreign.XXXXXX)
LOOP=
cleanup() {
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] || { echo "make_foreign.sh: must run as root (loop devices, chown)" >&2; exit 1; }
mkdir -p "$OUT"

S=$W/tree
mkdir -p "$S/names" "$S/sub"
LONG=$(python3 -c 'print("".join("long-name-%03d-" % i for i in range(30))[:255])')
echo first >"$S/names/a-first"
echo "the 255-byte name" >"$S/names/$LONG"
echo "owned by 70000:80000" >"$S/names/owned"; chown 70000:80000 "$S/names/owned"
echo unicode >"$S/names/utf8_ünï"
echo last >"$S/names/z-last"
seq -f 'line %05g of a compressible file' 1 1200 >"$S/text.txt"            # 40 KB
python3 -c 'import random,sys; sys.stdout.buffer.write(random.Random(7).randbytes(12000))' \
    >"$S/sub/random.bin"                                                   # stored raw
echo s >"$S/sub/s"
mke2fs -q -F -t ext4 -b 1024 -I 256 -N 64 -L longname -d "$S" "$W/fs.img" 2M
LOOP=$(losetup --find --show "$W/fs.img")
# mke2fs -d enters names in sorted order: a-first, the long name, owned, utf8_ünï, z-last
dump -0 -b 10 -L longname -f "$OUT/l0-longname-b10.dump" "$LOOP"
dump -0 -b 63 -L longname -f "$OUT/l0-longname-b63.dump" "$LOOP"
dump -0 -y -L longname-lzo -f "$OUT/l0-lzo.dump" "$LOOP"

python3 - "$OUT" "$LONG" <<'EOF'
import hashlib, json, re, subprocess, sys
from pathlib import Path
out, long = Path(sys.argv[1]), sys.argv[2]
facts = {"long_name": long, "images": {}}
for name in ("l0-longname-b10", "l0-longname-b63", "l0-lzo"):
    path = out / f"{name}.dump"
    listing = subprocess.run(["/usr/sbin/restore", "-t", "-f", path], capture_output=True,
                             check=True).stdout
    inodes = sorted(int(m.group(1)) for m in re.finditer(rb"^ +(\d+)\t", listing, re.M))
    facts["images"][name] = {"size": path.stat().st_size,
                             "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                             "stock_listing_inodes": inodes,
                             "stock_listing": listing.decode("utf-8", "backslashreplace")}
(out / "foreign.json").write_text(json.dumps(facts, indent=1, ensure_ascii=False) + "\n")
EOF
ls -l "$OUT"/l0-longname-*.dump "$OUT"/l0-lzo.dump
