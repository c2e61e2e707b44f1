"""Readers for every data set of the trainer, from their real on-disk formats; never downloads.

Small data sets (CIFAR-10/100, STL-10, Tiny-ImageNet, Fashion-MNIST) load whole into one
uint8 tensor (``load_arrays``), so augmentation runs batched on the accelerator. Folders
of encoded images (CIFAR JPEG folders, Tiny-ImageNet) are decoded once into a cached
safetensors file in the user cache (``train.data.cache``; never in the data folder), keyed by
the split, the folder's absolute path and a fingerprint of its files, so no epoch decodes a
JPEG again. ImageNet-sized sets stream from ImageFolder trees through
``ImageFolderCrops``, which decodes and crops in DataLoader workers. Your own images
(``--dataset folder``) go through ``load_folder``: either way, by their size.

Every failure to find or parse data raises ``DatasetError`` naming the data set, the path
tried and the layout expected there.
"""
from .base import ArrayDataset, DatasetError, default_data_dir, is_in_memory
from .folder_run import FolderData, FolderOptions, load_folder
from .folders import ImageCrops, ImageFolderCrops
from .load import load_arrays
from .user_folder import FOLDER

__all__ = [
    "DatasetError",
    "ArrayDataset",
    "load_arrays",
    "default_data_dir",
    "is_in_memory",
    "ImageFolderCrops",
    "ImageCrops",
    "FOLDER",
    "FolderOptions",
    "FolderData",
    "load_folder",
]
