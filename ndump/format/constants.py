"""Format constants (classic: protocols/dumprestore.h).  FORMAT.md §1, §2."""

TP_BSIZE = 1024          # every header and data block on the medium
TP_NINDIR = 512          # entries in c_addr
TP_NINOS = 128           # 32-bit entries of the c_inos overlay
NTREC = 10               # default blocking factor (KiB per record)
HIGHDENSITYTREC = 32     # stock restore's default read buffer, in blocks
MAXNTREC = 1024          # 1 MiB records at most
LBLSIZE = 16
NAMELEN = 64

NFS_MAGIC = 60012
OFS_MAGIC = 60011            # 4.1BSD-4.2BSD-era header (format/bsd.py)
FS_UFS2_MAGIC = 0x19540119   # FreeBSD/NetBSD UFS2 header (format/bsd.py)
CHECKSUM = 84446
ROOTINO = 2
WINO = 1                 # whiteout inode, reserved
FIRST_INO = 3            # first number ndump hands out after the root

TS_TAPE = 1
TS_INODE = 2
TS_BITS = 3
TS_ADDR = 4
TS_END = 5
TS_CLRI = 6
TS_NAMES = {TS_TAPE: "TS_TAPE", TS_INODE: "TS_INODE", TS_BITS: "TS_BITS",
            TS_ADDR: "TS_ADDR", TS_END: "TS_END", TS_CLRI: "TS_CLRI"}

DR_NEWHEADER = 0x0001
DR_NEWINODEFMT = 0x0002
DR_INODEINFO = 0x0002
DR_COMPRESSED = 0x0080
DR_METAONLY = 0x0100
DR_EXTATTRIBUTES = 0x8000

EXT_REGULAR = 0
EXT_MACOSFNDRINFO = 1
EXT_MACOSRESFORK = 2
EXT_XATTR = 3
EXT_NDUMP_XATTR = 4      # ndump extension: an EA block over 4 KiB; stock restore skips it
NDUMP_XATTR_MAXSIZE = 65536   # entry value offsets are 16-bit

# file types in di_mode
S_IFMT = 0o170000
S_IFSOCK = 0o140000
S_IFLNK = 0o120000
S_IFREG = 0o100000
S_IFBLK = 0o060000
S_IFDIR = 0o040000
S_IFCHR = 0o020000
S_IFIFO = 0o010000

DT_UNKNOWN = 0
DT_FIFO = 1
DT_CHR = 2
DT_DIR = 4
DT_BLK = 6
DT_REG = 8
DT_LNK = 10
DT_SOCK = 12
DT_WHT = 14

MODE_TO_DT = {S_IFIFO: DT_FIFO, S_IFCHR: DT_CHR, S_IFDIR: DT_DIR, S_IFBLK: DT_BLK,
              S_IFREG: DT_REG, S_IFLNK: DT_LNK, S_IFSOCK: DT_SOCK}

DIRBLKSIZ = 512          # directory entries never cross a 512-byte chunk
MAX_DIR_SIZE = 0x0FFFFFFF  # larger directory sizes trigger restore's quad-swap quirk
XATTR_MAXSIZE = 4096     # stock restore's EA record limit
MAX_SYMLINK = 4095
DB_ENTRIES = 12

# record compression (FORMAT §8): algorithm numbers in the record prefix
COMPRESS_ZLIB = 0
COMPRESS_BZLIB = 1
COMPRESS_LZO = 2
COMPRESS_ZSTD = 7        # ndump extension; stock restore refuses it

# ndump extension in c_spare (FORMAT §11.1 item 18)
NDX_MAGIC = b"NDX1"
