#!/bin/bash
# build-guest.sh OUT WHEELS - build the Debian 12 guest of the VM tests into the directory OUT:
#   OUT/vmlinuz, OUT/initrd.img   the guest's kernel and initramfs
#   OUT/root.img                  its root filesystem (ext4, raw; booted with snapshot=on,
#                                 so a run never changes it)
# WHEELS is a directory of wheels (ndump's dependencies, pytest) and requirements.txt naming
# what to install from it: they go into the venv /opt/ndump, with pip --no-index (the guest
# has no network). ndump itself is installed at each boot from the job disk (guest-init.sh).
#
# Run as root on a Debian 12 host: mmdebstrap takes the packages from the host's apt sources.
# tests/vm/vmharness.py calls this script and caches OUT under a hash of this file and of the
# requirements, so any change here builds a new guest.
set -euo pipefail
OUT=$1
WHEELS=$2
ROOT=$OUT/root
PACKAGES=linux-image-amd64,initramfs-tools,udev,kmod,e2fsprogs,iproute2,procps,psmisc,acl,attr
PACKAGES+=,lvm2,tgt,open-iscsi,mt-st,btrfs-progs,xfsprogs,dump,python3,python3-venv

# Kernel modules the guest never loads (graphics, sound, media, wireless, NICs, USB, ...):
# a smaller tree is quicker to unpack and to copy into root.img.
KERNEL_EXCLUDES=$(mktemp)
trap 'rm -f "$KERNEL_EXCLUDES"' EXIT
for d in drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet drivers/infiniband \
         drivers/staging drivers/usb drivers/bluetooth drivers/iio drivers/isdn drivers/nfc \
         drivers/mtd drivers/video drivers/hid sound net/wireless net/mac80211 net/bluetooth; do
    echo "path-exclude=/lib/modules/*/kernel/$d/*"
    echo "path-exclude=/usr/lib/modules/*/kernel/$d/*"
done >"$KERNEL_EXCLUDES"

mkdir -p "$OUT"
rm -rf --one-file-system "$ROOT"
# The initramfs only has to find a virtio disk holding ext4: MODULES=list keeps it small,
# which matters when the guest decompresses it under software emulation.
mmdebstrap --variant=minbase --mode=root --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt="$KERNEL_EXCLUDES" \
    --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"
        echo MODULES=list > "$1/etc/initramfs-tools/conf.d/ndump-vm.conf"
        printf "virtio_pci\nvirtio_blk\next4\n" >> "$1/etc/initramfs-tools/modules"' \
    --customize-hook='cp -r "'"$WHEELS"'" "$1/opt/ndump-wheels"
        chroot "$1" python3 -m venv /opt/ndump
        chroot "$1" env -i PATH=/usr/bin:/bin /opt/ndump/bin/pip install -q --no-index --disable-pip-version-check \
            --find-links /opt/ndump-wheels -r /opt/ndump-wheels/requirements.txt
        echo ndump-vm > "$1/etc/hostname"
        cat > "$1/sbin/ndump-vm-init" <<"EOF"
#!/bin/sh
# PID 1 of the ndump test guest: mount the job disk named on the kernel command line
# (ndump.job=DEVICE) and hand over to the guest-init.sh on it.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys 2>/dev/null
mount -t devtmpfs dev /dev 2>/dev/null
mount -o remount,rw /
job=$(sed -n "s/.*ndump\.job=\([^ ]*\).*/\1/p" /proc/cmdline)
mkdir -p /job
if mount -t ext4 "$job" /job && [ -f /job/guest-init.sh ]; then
    exec /bin/sh /job/guest-init.sh
fi
echo "ndump-vm: cannot mount the job disk ${job:-(no ndump.job= on the command line)}"
echo o > /proc/sysrq-trigger
sleep 60
EOF
        chmod 755 "$1/sbin/ndump-vm-init"' \
    bookworm "$ROOT"

cp "$ROOT"/boot/vmlinuz-* "$OUT/vmlinuz"
cp "$ROOT"/boot/initrd.img-* "$OUT/initrd.img"
rm -f "$OUT/root.img"
truncate -s 3G "$OUT/root.img"
mkfs.ext4 -q -F -L ndump-vm-root -d "$ROOT" "$OUT/root.img"
rm -rf --one-file-system "$ROOT"
