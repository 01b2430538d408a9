#!/bin/sh
# Runs inside the test guest, started by /sbin/ndump-vm-init (PID 1) from the job disk
# mounted on /job (see tests/vm/vmharness.py). Installs the ndump wheel into the venv
# /opt/ndump offline, runs pytest on tests/vm/guest with the arguments in
# /job/pytest-args, leaves junit.xml, pytest.log and status in /job/out, powers off.
export PATH=/opt/ndump/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 CI=true
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mkdir -p /run/lock
[ -e /etc/mtab ] || ln -s ../proc/self/mounts /etc/mtab
mount -t tmpfs -o size=900m tmpfs /tmp
say() { echo "ndump-vm: [$(cut -d' ' -f1 /proc/uptime) s] $*"; }
finish() {
    say "powering off"
    sync
    umount /job
    echo o > /proc/sysrq-trigger
    sleep 30
}
trap finish EXIT
say "kernel $(uname -r), $(nproc) CPUs"

/lib/systemd/systemd-udevd --daemon
udevadm trigger --action=add
udevadm settle -t 60
ip link set lo up
modprobe dm-snapshot
modprobe st
say "udev settled"

if ! pip install -q --no-index --disable-pip-version-check --find-links /opt/ndump-wheels \
        /job/wheels/ndump-*.whl >/job/out/pip.log 2>&1; then
    cat /job/out/pip.log
    say "pip install of the ndump wheel failed"
    echo 2 >/job/out/status
    exit 0
fi
say "ndump installed: $(ndump --version 2>&1)"

cd /job
eval "set -- $(cat /job/pytest-args)"
{
    python3 -m pytest -p no:cacheprovider -o python_files='guest_*.py' \
        -o console_output_style=classic -v -rA --junitxml=/job/out/junit.xml tests/vm/guest "$@"
    echo $? >/job/out/status
} 2>&1 | tee /job/out/pytest.log
say "pytest done"
