"""The file-history catalog (SPEC §7): which dumps hold which names, and where
each inode's header lies on its volume.  ``Catalog(path)`` is the public API."""
from ndump.catalog.catalog import (
    BATCH, Catalog, CatalogError, DumpInfo, FileRow, Match, NewDump, default_path, file_type,
    medium_spec,
)
from ndump.catalog.schema import VERSION

__all__ = ["BATCH", "Catalog", "CatalogError", "DumpInfo", "FileRow", "Match", "NewDump",
           "VERSION", "default_path", "file_type", "medium_spec"]
