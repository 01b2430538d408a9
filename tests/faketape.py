#!/usr/bin/env python3
"""A userspace STAND-IN FOR A TAPE DRIVE, spoken to through the rmt protocol.

This machine has no tape drive and its kernel cannot emulate one (no CUSE), so
the tape tests run ndump against this program in place of the real ``rmt`` on
the far side of ``$RSH``.  It keeps what a drive keeps: record boundaries (each
W is one record, each R returns at most one), filemarks, a no-rewind position
that survives between runs, end of medium (a write past the capacity fails with
ENOSPC and writes nothing), and erase-after-write.

State lives in $FAKETAPE_DIR: ``current.tape`` is the loaded cartridge (a JSON
list of records as hex and filemarks as null, plus the head position); a test's
-F script "changes the tape" by renaming it.  $FAKETAPE_CAPACITY caps the bytes
a cartridge holds.  Device names without a leading "n" (st0) rewind on close.
$FAKETAPE_BLOCK puts the drive in fixed-block mode with blocks of that many bytes,
as ``mt setblk`` does: like st, it then refuses (EINVAL) a write or read that is
not a whole number of blocks (st without read-ahead), keeps each block as a
record, a read takes as many blocks as asked for up to a filemark, and a record
of another size fails it (EIO); rmt's extended status request ``sD``
answers the block size (mt_dsreg), 0 in variable-block mode.
"""
import errno
import json
import os
import sys

MTFSF, MTBSF, MTFSR, MTBSR, MTWEOF, MTREW, MTOFFL = 1, 2, 3, 4, 5, 6, 7


class Tape:
    def __init__(self, path):
        self.path = path
        try:
            with open(path) as f:
                state = json.load(f)
        except FileNotFoundError:
            state = {"items": [], "pos": 0}
        self.items = [bytes.fromhex(x) if x is not None else None for x in state["items"]]
        self.pos = state["pos"]

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"items": [x.hex() if x is not None else None for x in self.items],
                       "pos": self.pos}, f)
        os.replace(tmp, self.path)

    def close(self, last_write, rewind):
        """What st does on a close: a filemark after writes, a rewind unless /dev/nst*."""
        if last_write:
            self.items[self.pos:] = [None]
            self.pos += 1
        if rewind:
            self.pos = 0
        self.save()

    def used(self):
        return sum(len(x) for x in self.items[:self.pos] if x is not None)


def reply_ok(out, n):
    out.write(b"A%d\n" % n)


def reply_err(out, code):
    out.write(b"E%d\n%s\n" % (code, os.strerror(code).encode()))


def main():
    tape_dir = os.environ["FAKETAPE_DIR"]
    capacity = int(os.environ.get("FAKETAPE_CAPACITY", str(1 << 40)))
    block = int(os.environ.get("FAKETAPE_BLOCK", "0"))
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    tape = None
    rewind_on_close = False
    last_write = False
    while True:
        cmd = inp.read(1)
        if not cmd:
            # the client died (a SIGKILLed dump): the kernel closes the device for it,
            # and st writes a filemark after writes, as on a close
            if tape is not None:
                tape.close(last_write, rewind_on_close)
            break
        if cmd == b"O":
            name = inp.readline().strip().decode()
            inp.readline()                      # mode and flags
            tape = Tape(os.path.join(tape_dir, "current.tape"))
            rewind_on_close = not os.path.basename(name).startswith("n")
            last_write = False
            reply_ok(out, 0)
        elif cmd == b"C":
            inp.readline()
            if tape is not None:
                tape.close(last_write, rewind_on_close)
            tape = None
            reply_ok(out, 0)
        elif cmd == b"W":
            n = int(inp.readline())
            data = inp.read(n)
            if block and n % block:
                reply_err(out, errno.EINVAL)      # st: "Write not multiple of tape block size"
            elif tape.used() + n > capacity:
                reply_err(out, errno.ENOSPC)
            else:
                blocks = [data[i:i + block] for i in range(0, n, block)] if block else [data]
                tape.items[tape.pos:] = blocks     # writing erases what follows
                tape.pos += len(blocks)
                last_write = True
                reply_ok(out, n)
        elif cmd == b"R":
            n = int(inp.readline())
            last_write = False
            if block:
                read_blocks(tape, n, block, out)
            elif tape.pos >= len(tape.items):
                reply_ok(out, 0)                  # end of data
            elif tape.items[tape.pos] is None:
                tape.pos += 1                     # a filemark reads as end of file
                reply_ok(out, 0)
            elif len(tape.items[tape.pos]) > n:
                reply_err(out, errno.ENOMEM)      # as st does for a short buffer
            else:
                data = tape.items[tape.pos]
                tape.pos += 1
                reply_ok(out, len(data))
                out.write(data)
        elif cmd == b"I":
            op = int(inp.readline())
            count = int(inp.readline())
            code = ioctl(tape, op, count)
            if op == MTWEOF:
                last_write = False
            reply_err(out, code) if code else reply_ok(out, count)
        elif cmd == b"s":
            what = inp.read(1)                    # extended status: one letter, no newline
            reply_ok(out, block) if what == b"D" else reply_err(out, errno.EINVAL)
        else:
            inp.readline()
            reply_err(out, errno.EINVAL)
        out.flush()


def read_blocks(tape, n, block, out):
    """A fixed-block read: n bytes of whole blocks, fewer at a filemark or the end."""
    if n % block:
        reply_err(out, errno.EINVAL)
        return
    got = []
    while len(got) < n // block and tape.pos < len(tape.items) and tape.items[tape.pos] is not None:
        if len(tape.items[tape.pos]) != block:
            reply_err(out, errno.EIO)             # st: "Incorrect block size"
            return
        got.append(tape.items[tape.pos])
        tape.pos += 1
    if not got and tape.pos < len(tape.items):
        tape.pos += 1                             # a filemark reads as end of file
    data = b"".join(got)
    reply_ok(out, len(data))
    out.write(data)


def ioctl(tape, op, count):
    if op == MTWEOF:
        tape.items[tape.pos:] = [None] * count
        tape.pos += count
    elif op == MTFSF:
        for _ in range(count):
            while tape.pos < len(tape.items) and tape.items[tape.pos] is not None:
                tape.pos += 1
            if tape.pos >= len(tape.items):
                return errno.EIO
            tape.pos += 1
    elif op in (MTREW, MTOFFL):
        tape.pos = 0
    elif op == MTBSF:
        for _ in range(count):
            tape.pos -= 1
            while tape.pos > 0 and tape.items[tape.pos - 1] is not None:
                tape.pos -= 1
    else:
        return errno.EINVAL
    return 0


if __name__ == "__main__":
    main()
