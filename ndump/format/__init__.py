"""The on-media format (FORMAT.md).  Pure: bytes and read callables in, records out."""
from ndump.format.constants import *  # noqa: F401,F403  (dumprestore.h names)
from ndump.format.dirent import DirEntry, dirsiz, pack_dir, unpack_dir
from ndump.format.extattr import (
    ACL_ACCESS, ACL_DEFAULT, ExtAttrError, acl_from_disk, acl_to_disk, pack_ea_records,
    unpack_ea_record,
)
from ndump.format.header import (
    BadChecksumError, BadMagicError, BadTypeError, Header, HeaderDecoder, HeaderError, Totals,
    checksum_ok,
    detect_order, is_header, make_inode, pack_header, unpack_header,
)
from ndump.format.inode import Inode, NODUMP_FL, symlink_payload
from ndump.format.records import (
    ALGORITHMS, BlockSource, RecordError, compress_record, zstd_available,
)
from ndump.format.stream import (
    DumpFormatError, DumpIdent, FormatReader, FormatWriter, Hole, InodeRecord, NotADumpError,
    TruncatedError,
)

__all__ = [
    "DirEntry", "dirsiz", "pack_dir", "unpack_dir", "ACL_ACCESS", "ACL_DEFAULT", "ExtAttrError",
    "acl_from_disk", "acl_to_disk", "pack_ea_records", "unpack_ea_record", "BadChecksumError",
    "BadMagicError", "BadTypeError", "Header", "HeaderDecoder", "HeaderError", "Totals", "checksum_ok",
    "detect_order", "is_header", "make_inode", "pack_header", "unpack_header", "Inode", "NODUMP_FL",
    "symlink_payload", "ALGORITHMS", "BlockSource", "RecordError",
    "compress_record", "zstd_available", "DumpFormatError", "DumpIdent",
    "FormatReader", "FormatWriter", "Hole", "InodeRecord", "NotADumpError", "TruncatedError",
]
