"""Search your images: an on-disk FAISS index of a folder's embeddings.

``build_index`` embeds a folder (``frossl_hub.embed_folder``, torchrun-sharded) into an index
folder, ``update_index`` grows it, ``open_index`` opens it for ``search``, and
``find_duplicates`` groups near-duplicates. Layout and guarantees: ``frossl_hub.index.layout``.
"""
from .build import DTYPES, BuildOptions, build_index
from .duplicates import DEFAULT_THRESHOLD, find_duplicates
from .embedding import ModelIdentity, check_model, embed_queries, model_identity
from .errors import (EmptyFolderError, IndexCorruptError, IndexLockedError, ItemNotFoundError,
                     ModelMismatchError, SearchArgumentError, SearchIndexError,
                     UnreadableImagesError)
from .factory import FLAT_MAX, default_factory
from .layout import Manifest
from .lock import write_lock
from .store import Hit, SearchIndex, open_index
from .update import update_index

__all__ = ["DEFAULT_THRESHOLD", "DTYPES", "FLAT_MAX", "BuildOptions", "EmptyFolderError", "Hit",
           "IndexCorruptError", "IndexLockedError", "ItemNotFoundError", "Manifest",
           "ModelIdentity", "ModelMismatchError", "SearchArgumentError", "SearchIndex",
           "SearchIndexError", "UnreadableImagesError", "build_index", "check_model",
           "default_factory", "embed_queries", "find_duplicates", "model_identity", "open_index",
           "update_index", "write_lock"]
