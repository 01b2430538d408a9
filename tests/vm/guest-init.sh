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
    cd /
    sync
    umount /job
    echo o > /proc/sysrq-trigger
    sleep 30
}
trap finish EXIT
say "guest-init: kernel $(uname -r), $(nproc) CPUs"

/lib/systemd/systemd-udevd --daemon
udevadm trigger --action=add
# ndump's dependencies are in the venv already (build-guest.sh): install the wheel alone,
# while udev settles
pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
    /job/wheels/ndump-*.whl >/job/out/pip.log 2>&1 &
pip=$!
ip link set lo up
modprobe dm-snapshot
modprobe st
modprobe loop
udevadm settle -t 60
say "udev settled"
if ! wait $pip; then
    cat /job/out/pip.log
    say "pip install of the ndump wheel failed"
    exit 0
fi
say "ndump installed: $(ndump --version 2>&1)"

# Each line of /job/parts is NAME<TAB>PYTEST-ARGS: the parts run at the same time (the
# guest has two CPUs), each leaving junit-NAME.xml, pytest-NAME.log and status-NAME.
# Temporary trees go to the root filesystem (ext4: user xattrs; tmpfs has none on 6.1).
run_part() {
    name=$1
    shift
    {
        python3 -m pytest -p no:cacheprovider -o python_files='guest_*.py' \
            -o console_output_style=classic -v -rA --durations=0 --basetemp="/var/tmp/pytest-$name" \
            --junitxml="/job/out/junit-$name.xml" "$@"
        echo $? >"/job/out/status-$name"
    } 2>&1 | tee "/job/out/pytest-$name.log" | sed -u "s/^/[$name] /"
}
cd /job
while IFS="$(printf '\t')" read -r name args; do
    eval "run_part $name $args" &
done </job/parts
wait
say "pytest done"
