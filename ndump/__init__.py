"""ndump: dump/restore for Linux directory trees in the classic dump tape format."""
__version__ = "0.1.0"
