"""Header layouts of dumps that Linux dump does not write, read as classic restore reads
them (FORMAT.md §2.3; classic: restore/tape.c gethead(), 4.4BSD and FreeBSD
protocols/dumprestore.h).

* OFS_MAGIC (60011): the header of 4.1/4.2BSD-era dumps: a 16-bit c_inumber, a
  64-byte inode (16-bit mode, link count, owner and group; 32-bit size, device and
  times in whole seconds), c_count at 96 and a 256-entry c_addr at 100; no label,
  level or names.  Their directories hold V7 16-byte entries (dirent.py).
* FS_UFS2_MAGIC (0x19540119): FreeBSD (5 and later) and NetBSD UFS2 dumps: 64-bit
  dates, tape addresses and first record at 896-927, 64-bit access and
  modification seconds with nanoseconds, the birth time, BSD file flags, and
  c_extsize bytes of extended attributes after a file's data in its block map
  (``unpack_bsd_extattrs``; stream.py collects them).
* NFS_MAGIC without DR_NEWINODEFMT on TS_TAPE (4.2BSD-4.3BSD): the Linux layout,
  but owner and group in the 16-bit fields at 36 and 38 (header.py reads it with
  ``old_inodes``) and directories with a 16-bit d_namlen.

Pure: 1024 bytes in, a ``Header`` out; the checksum is checked by the caller.
"""
from __future__ import annotations

import struct

from ndump.format.constants import S_IFBLK, S_IFCHR, S_IFMT
from ndump.format.header import Header, _uncstr
from ndump.format.inode import NODUMP_FL, Inode, decode_rdev

# -- OFS --------------------------------------------------------------------------------
_OFS = "iiiiiH2xii" "HHHHii36xiii" "i256s"
#       type date ddate volume tapea inumber magic checksum
#       mode nlink uid gid size rdev (addr) atime mtime ctime     count addr
_OFS_LE = struct.Struct("<" + _OFS)
_OFS_BE = struct.Struct(">" + _OFS)


def unpack_ofs(block: bytes, order: str) -> Header:
    (htype, date, ddate, volume, tapea, inumber, _magic, _ck, mode, nlink, uid, gid, size,
     rdev, atime, mtime, ctime, count, addr) = (_OFS_LE if order == "<" else _OFS_BE).unpack_from(block)
    inode = Inode(mode=mode, nlink=nlink, size=size & 0xFFFFFFFF, uid=uid, gid=gid, atime=atime,
                  mtime=mtime, ctime=ctime, rdev=_rdev(mode, rdev))
    return Header(type=htype, date=date, ddate=ddate, volume=volume, tapea=tapea & 0xFFFFFFFF,
                  inumber=inumber, inode=inode, count=count, addr=addr + bytes(256),
                  label="", level=0, flags=0)


# -- UFS2 -------------------------------------------------------------------------------
_UFS2 = ("iiiiiIii"              # type old_date old_ddate volume old_tapea inumber magic cksum
         "Hh4xQ"                 # mode spare1[0] (old nlink) size
         "4xi4xi8x"              # old_atime atimensec old_mtime mtimensec spare2
         "iiqqqi24x"             # rdev birthtimensec birthtime atime mtime extsize spare4
         "I8xII8x"               # file_flags spare5 uid gid spare6
         "i512s16si64s64s64s"    # count addr label level filesys dev host
         "ii" "qqqq")            # flags old_firstrec date ddate tapea firstrec
_UFS2_LE = struct.Struct("<" + _UFS2)
_UFS2_BE = struct.Struct(">" + _UFS2)
assert _UFS2_LE.size == 928

# BSD chflags(2) bits -> Linux FS_IOC_SETFLAGS bits; the others have no Linux meaning
_BSD_FLAGS = ((0x00000001, NODUMP_FL),            # UF_NODUMP
              (0x00000002, 0x00000010),           # UF_IMMUTABLE -> FS_IMMUTABLE_FL
              (0x00020000, 0x00000010),           # SF_IMMUTABLE
              (0x00000004, 0x00000020),           # UF_APPEND -> FS_APPEND_FL
              (0x00040000, 0x00000020))           # SF_APPEND


def unpack_ufs2(block: bytes, order: str) -> Header:
    (htype, _od, _odd, volume, _ota, inumber, _magic, _ck, mode, nlink, size,
     atimensec, mtimensec, rdev, btimensec, btime, atime, mtime, extsize, fflags, uid, gid,
     count, addr, label, level, filesys, dev, host, flags, _ofirst, date, ddate, tapea,
     firstrec) = (_UFS2_LE if order == "<" else _UFS2_BE).unpack_from(block)
    ns = [v if 0 <= v < 1_000_000_000 else 0 for v in (atimensec, mtimensec, btimensec)]
    inode = Inode(mode=mode, nlink=max(nlink, 1), size=size, uid=uid, gid=gid,
                  atime=atime, atime_ns=ns[0], mtime=mtime, mtime_ns=ns[1],
                  ctime=mtime, ctime_ns=ns[1], rdev=_rdev(mode, rdev),
                  flags=linux_flags(fflags), birth=(btime, ns[2]) if btime else None)
    return Header(type=htype, date=date, ddate=ddate, volume=volume, tapea=tapea,
                  inumber=inumber, inode=inode, count=count, addr=addr, label=_uncstr(label),
                  level=level, filesys=_uncstr(filesys), dev=_uncstr(dev), host=_uncstr(host),
                  flags=flags, firstrec=firstrec, extsize=max(0, extsize))


def linux_flags(bsd: int) -> int:
    out = 0
    for bit, linux in _BSD_FLAGS:
        if bsd & bit:
            out |= linux
    return out


def _rdev(mode: int, raw: int) -> int:
    return decode_rdev(raw, 0) if mode & S_IFMT in (S_IFCHR, S_IFBLK) else 0


# -- UFS2 extended attributes (FreeBSD sys/extattr.h struct extattr) ----------------------
_EA_HEAD = {o: struct.Struct(o + "IBBB") for o in "<>"}  # length namespace contentpadlen namelength
_EA_NAMESPACES = {1: "user"}         # 2, "system", holds BSD's POSIX.1e ACLs: not Linux's


def unpack_bsd_extattrs(raw: bytes, order: str) -> tuple[list[tuple[str, bytes]], int, bool]:
    """A UFS2 inode's extended-attribute area -> ([(Linux name, value)], number of
    system-namespace attributes left out, whether the area is damaged).

    Each entry: u32 length (of the whole entry), u8 namespace, u8 padding after the
    value, u8 name length, the name, zeros to an 8-byte boundary, the value.
    User attributes become ``user.NAME``; the system namespace is left out.
    """
    head = _EA_HEAD[order]
    out: list[tuple[str, bytes]] = []
    skipped = 0
    pos = 0
    bad_name = False
    while pos + head.size <= len(raw):
        length, space, pad, namelen = head.unpack_from(raw, pos)
        base = (7 + namelen + 7) & ~7
        if length == 0 and space == 0:
            break                            # the zero fill after the last entry
        if length < base + pad or pos + length > len(raw) or length % 8:
            return out, skipped, True
        name = raw[pos + 7:pos + 7 + namelen]
        prefix = _EA_NAMESPACES.get(space)
        if prefix is None:
            skipped += 1
        elif b"\0" in name:
            bad_name = True                  # no system call takes such a name
        elif name:
            out.append((f"{prefix}.{name.decode('utf-8', 'surrogateescape')}",
                        raw[pos + base:pos + length - pad]))
        pos += length
    return out, skipped, bad_name
