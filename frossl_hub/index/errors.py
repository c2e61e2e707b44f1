"""What can go wrong with a search index, in the library's own terms (no HTTP here).

Every class is a ``ValueError`` so the command line reports it as one ``error:`` line;
``serve`` maps each to an HTTP status.
"""
from __future__ import annotations

__all__ = ["EmptyFolderError", "IndexCorruptError", "IndexLockedError", "ItemNotFoundError",
           "ModelMismatchError", "SearchArgumentError", "SearchIndexError",
           "UnreadableImagesError"]


class SearchIndexError(ValueError):
    """Base class of the index's errors."""


class EmptyFolderError(SearchIndexError):
    """The folder to index holds no image files (or none could be read)."""


class UnreadableImagesError(SearchIndexError):
    """Some files could not be decoded and ``--strict`` refuses to skip them."""


class IndexCorruptError(SearchIndexError):
    """The index folder is missing, truncated or edited by hand (its checksums disagree)."""


class IndexLockedError(SearchIndexError):
    """Another process is writing this index."""


class ModelMismatchError(SearchIndexError):
    """Embeddings of another model (another weights sha256) were offered to the index."""


class SearchArgumentError(SearchIndexError):
    """A search argument is out of range (``k``), or a query has the wrong shape."""


class ItemNotFoundError(SearchIndexError):
    """No such item id, or its file is not inside the indexed folder."""
