"""Readers for standard on-disk data set formats, and augmentation transforms written in plain torch."""
from .base import TensorImageDataset, TransformedDataset, pad_to_size, reformat, repeat_channels
from .cifar import RestrictedUnpickler, UnsafePickleError, cifar, load_pickle
from .datasets import DATASET_NAMES, DATASETS, DatasetInfo, build_dataset, dataset_info
from .idx import read_idx, write_idx
from .image_folder import IMAGE_EXTENSIONS, ImageFolderDataset, decode_image, image_folder
from .mnist import FASHION_MNIST_CLASSES, MNIST_CLASSES, mnist
from .mpii import FLIP_PAIRS, JOINT_NAMES, MPIIDataset, read_annotations
from .transforms import (center_crop, normalize, random_crop, random_hflip, random_resized_box,
                         random_resized_crop, resize_center_crop)

__all__ = [
    "read_idx", "write_idx",
    # readers
    "build_dataset", "dataset_info", "DATASETS", "DATASET_NAMES", "DatasetInfo", "cifar", "mnist", "image_folder",
    "TensorImageDataset", "TransformedDataset", "ImageFolderDataset",
    "reformat", "pad_to_size", "repeat_channels", "decode_image", "load_pickle",
    "RestrictedUnpickler", "UnsafePickleError",
    "IMAGE_EXTENSIONS", "MNIST_CLASSES", "FASHION_MNIST_CLASSES",
    # MPII pose (JSON layout)
    "MPIIDataset", "read_annotations", "JOINT_NAMES", "FLIP_PAIRS",
    # transforms
    "random_crop", "random_hflip", "random_resized_crop", "random_resized_box", "center_crop",
    "resize_center_crop", "normalize",
]

from .s2d3ds import S2D3DS, s2d3ds_splits  # noqa: E402  (2D-3D-S reader, issue 6)
__all__ += ["S2D3DS", "s2d3ds_splits"]
