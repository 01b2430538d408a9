#!/bin/bash
# Remake the golden images of tests/data with the stock Linux dump 0.4b47 (Debian package
# `dump` 0.4b47-4) and record what stock restore makes of them in golden.json.
#
#   usage (as root): tests/data/make_golden.sh [OUTDIR]      (default: tests/data itself)
#
# Needs: dump, e2fsprogs (mke2fs), util-linux (losetup, mount), acl (setfacl), attr
# (setfattr), e2fsprogs (chattr), python3. See MAKE.md for what each image holds.
# The images carry the dump date, so a remake never gives identical bytes; golden.json
# is rewritten from the new images by golden_facts.py (run at the end).
set -euo pipefail
export TZ=UTC LC_ALL=C.UTF-8

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$(realpath -m "${1:-$HERE}")
W=$(mktemp -d /tmp/make-golden.XXXXXX)
MNT=$W/mnt
LOOPS=()
mkdir -p "$OUT" "$MNT"

cleanup() {
    mountpoint -q "$MNT" && umount "$MNT"
    for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] || { echo "make_golden.sh: must run as root (loop devices, mount, mknod)" >&2; exit 1; }

say() { echo "== $*"; }
# attach IMG: attach to a free loop device, keep it in $LOOP (detached at exit)
attach() { LOOP=$(losetup --find --show "$1"); LOOPS+=("$LOOP"); }
# randfile SEED SIZE PATH: reproducible pseudo-random bytes
randfile() {
    python3 -c 'import random,sys; sys.stdout.buffer.write(random.Random(int(sys.argv[1])).randbytes(int(sys.argv[2])))' "$1" "$2" >"$3"
}
# sparsefile PATH SIZE OFFSET:TEXT...: a file of SIZE bytes holding TEXT (repeated to 4 KiB) at each OFFSET
sparsefile() {
    local path=$1 size=$2; shift 2
    : >"$path"
    for spec in "$@"; do
        printf "%.0s${spec#*:}" $(seq 4096) | head -c 4096 | dd of="$path" bs=1 seek="${spec%%:*}" conv=notrunc status=none
    done
    truncate -s "$size" "$path"
}
# stamp_all DIR T0: give every entry its own atime/mtime, T0 + n seconds and n-dependent ns,
# in reverse name order (contents before their directory; the same order on every run)
stamp_all() {
    local n=0 f
    while IFS= read -r -d '' f; do
        n=$((n + 1))
        touch -h -m -d "@$(($2 + n)).$(printf %09d $((123456789 + n * 1001)))" "$f"
        touch -h -a -d "@$(($2 - 86400 + n)).$(printf %09d $((987654321 - n * 999)))" "$f"
    done < <(find "$1" -mindepth 1 -not -path "$1/lost+found*" -print0 | LC_ALL=C sort -rz)
}

# ---------------------------------------------------------------------------------------
say "l0-basic, l0-zlib, l0-bzip2, l0-b64, l1-after-rename: 1 KiB-block ext4, 256 inodes"
S=$W/basic
mkdir -p "$S"/dir1/dir2/dir3 "$S"/hard/sub "$S"/many "$S"/sticky "$S"/names
: >"$S/empty"
printf x >"$S/one"
randfile 1 1023 "$S/f1023"; randfile 2 1024 "$S/f1024"; randfile 3 1025 "$S/f1025"
seq -f 'line %05g of text.txt' 1 250 >"$S/text.txt"
echo "three directories down" >"$S/dir1/dir2/dir3/deep.txt"
echo "one inode, three names" >"$S/hard/a"
ln "$S/hard/a" "$S/hard/sub/b"; ln "$S/hard/a" "$S/dir1/c"
echo "150 names for one inode" >"$S/many/many-name-000"      # 150 names: 4 directory blocks,
for i in $(seq 1 149); do                                     # which puts the TS_INODE of f1023
    ln "$S/many/many-name-000" "$S/many/many-name-$(printf %03d "$i")"  # at block 37
done
ln -s one "$S/sym-short"
ln -s "$(printf 'long-target-%03d/' $(seq 1 13) | head -c 199)x" "$S/sym-long"
ln -s nowhere/at/all "$S/sym-dangling"
mkfifo "$S/fifo"
mknod "$S/null" c 1 3; mknod "$S/bigdev" c 300 70000; mknod "$S/sdb1" b 8 17
python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$S/sock"
printf '#!/bin/sh\n' >"$S/setuid"; chmod 4755 "$S/setuid"
printf '#!/bin/sh\n' >"$S/setgid"; chmod 2755 "$S/setgid"
chmod 1777 "$S/sticky"
echo secret >"$S/noperm"; chmod 000 "$S/noperm"
echo "owned by 70000:80000" >"$S/owned"; chown 70000:80000 "$S/owned"
echo space >"$S/names/with space"
echo unicode >"$S/names/ünïcødé-名前"
echo newline >"$S/names/new"$'\n'"line"
echo long >"$S/names/$(printf 'n%.0s' $(seq 254))"
echo "chattr +A" >"$S/noatime"

mke2fs -q -F -t ext4 -b 1024 -I 256 -N 256 -L basic -d "$S" "$W/basic.img" 4M
attach "$W/basic.img"; BASIC=$LOOP
mount "$BASIC" "$MNT"
chattr +A "$MNT/noatime"
stamp_all "$MNT" 1600000000
umount "$MNT"
sleep 1.1   # inode ctimes must be older than the level-0 date, or level 1 takes them too
dump -0 -u -D "$W/dumpdates" -L basic -f "$OUT/l0-basic.dump" "$BASIC"
dump -0 -z6 -L basic-zlib -f "$OUT/l0-zlib.dump" "$BASIC"
dump -0 -j -L basic-bzip2 -f "$OUT/l0-bzip2.dump" "$BASIC"
dump -0 -b 64 -L basic-b64 -f "$OUT/l0-b64.dump" "$BASIC"
cp --sparse=always "$W/basic.img" "$W/basic-l0.img"    # the level-0 state, for golden_facts.py

say "l1-after-rename: renames, deletions, edits, a link split, a chmod, new files"
sleep 1.1
mount "$BASIC" "$MNT"
mv "$MNT/text.txt" "$MNT/renamed.txt"
mv "$MNT/dir1/dir2" "$MNT/dir1/dir2-moved"
rm "$MNT/f1023" "$MNT/sym-dangling" "$MNT/hard/sub/b"
printf 'edited at level 1\n' >>"$MNT/f1025"
chmod 600 "$MNT/one"
mkdir "$MNT/newdir"; echo "new at level 1" >"$MNT/newdir/new-file"
ln -s renamed.txt "$MNT/newdir/new-link"
touch -h -m -d @1700000000.5 "$MNT/f1025" "$MNT/newdir/new-file" "$MNT/newdir/new-link" "$MNT/newdir" \
    "$MNT/dir1" "$MNT/hard/sub" "$MNT"
umount "$MNT"
dump -1 -u -D "$W/dumpdates" -L basic-l1 -f "$OUT/l1-after-rename.dump" "$BASIC"
cp "$W/dumpdates" "$W/dumpdates.basic"

say "l0-damaged-block-37: l0-basic with 4 bytes inverted at block 37 (bytes 37*1024+512..515)"
cp "$OUT/l0-basic.dump" "$OUT/l0-damaged-block-37.dump"
python3 - "$OUT/l0-damaged-block-37.dump" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(37 * 1024 + 512)
    b = f.read(4)
    f.seek(37 * 1024 + 512)
    f.write(bytes(x ^ 0xFF for x in b))
EOF

# ---------------------------------------------------------------------------------------
say "l0-sparse: 4 KiB-block ext4"
S=$W/sparse
mkdir -p "$S"
sparsefile "$S/sparse-3m" 3145728 0:A 1048576:B              # data at 0 and 1 MiB, trailing hole
sparsefile "$S/hole-middle" 6291456 0:C 6283264:D            # 4 KiB, hole, 4 KiB at the end
sparsefile "$S/leading-hole" 1052672 1048576:E               # hole, then 4 KiB
truncate -s 2M "$S/all-hole"                                 # nothing but a hole
sparsefile "$S/odd-size" 1000000 0:F 524288:G                # size not a block multiple
echo "not sparse" >"$S/plain"
mke2fs -q -F -t ext4 -b 4096 -I 256 -N 64 -L sparse -d "$S" "$W/sparse.img" 16M
attach "$W/sparse.img"
mount "$LOOP" "$MNT"; stamp_all "$MNT" 1610000000; umount "$MNT"
dump -0 -L sparse -f "$OUT/l0-sparse.dump" "$LOOP"

# ---------------------------------------------------------------------------------------
say "l0-xattr-acl: 4 KiB-block ext4 (in-inode and block EAs); xattrs and ACLs set on the mount"
S=$W/xattr
mkdir -p "$S/acl-dir" "$S/xattr-dir"
for f in plain xattr-small xattr-big xattr-both trusted security acl-file acl-and-xattr; do
    echo "$f" >"$S/$f"
done
mke2fs -q -F -t ext4 -b 4096 -I 256 -N 64 -L xattr -d "$S" "$W/xattr.img" 16M
attach "$W/xattr.img"
mount "$LOOP" "$MNT"
setfattr -n user.small -v hello "$MNT/xattr-small"
setfattr -n user.big -v "$(printf 'v%.0s' $(seq 1500))" "$MNT/xattr-big"
setfattr -n user.a -v 1 "$MNT/xattr-both"
setfattr -n user.big2 -v "0x$(printf '%02x' $(seq 0 255) $(seq 0 255) $(seq 0 255) $(seq 0 231))" "$MNT/xattr-both"
setfattr -n trusted.t -v "trusted value" "$MNT/trusted"
setfattr -n security.s -v "security value" "$MNT/security"
setfacl -m u:1000:rwx,g:2000:r-x "$MNT/acl-file"
setfacl -m u:1000:rwx "$MNT/acl-dir"
setfacl -d -m u:1000:rwx,g:2000:r-x "$MNT/acl-dir"
echo "created under a default ACL" >"$MNT/acl-dir/inherited"
setfacl -m u:1000:r-- "$MNT/acl-and-xattr"; setfattr -n user.note -v "both kinds" "$MNT/acl-and-xattr"
setfattr -n user.on-dir -v "a directory's xattr" "$MNT/xattr-dir"
stamp_all "$MNT" 1620000000
umount "$MNT"
dump -0 -L xattr-acl -f "$OUT/l0-xattr-acl.dump" "$LOOP"

# ---------------------------------------------------------------------------------------
say "multi-volume-00N: 1 KiB-block ext4, dump -M -B 150 (volumes of 150 KiB)"
S=$W/multi
mkdir -p "$S/d"
randfile 10 204800 "$S/big-200k"; randfile 11 153600 "$S/d/big-150k"
randfile 12 3000 "$S/small"; echo "last file" >"$S/d/z-last"
mke2fs -q -F -t ext4 -b 1024 -I 256 -N 64 -L multi -d "$S" "$W/multi.img" 4M
attach "$W/multi.img"
mount "$LOOP" "$MNT"; stamp_all "$MNT" 1630000000; umount "$MNT"
mkdir "$W/mv"
dump -0 -M -B 150 -L multi -f "$W/mv/multi-volume-" "$LOOP"
for v in "$W"/mv/multi-volume-*; do cp "$v" "$OUT/$(basename "$v").dump"; done

# ---------------------------------------------------------------------------------------
say "golden.json"
python3 "$HERE/golden_facts.py" "$OUT" \
    l0-basic="$W/basic-l0.img" l0-zlib="$W/basic-l0.img" l0-bzip2="$W/basic-l0.img" \
    l0-b64="$W/basic-l0.img" l1-after-rename="$W/basic.img" l0-damaged-block-37="$W/basic-l0.img" \
    l0-sparse="$W/sparse.img" l0-xattr-acl="$W/xattr.img" multi-volume="$W/multi.img"
ls -l "$OUT"/*.dump
