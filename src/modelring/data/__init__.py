"""Readers for standard on-disk data set formats."""
from .idx import read_idx

__all__ = ["read_idx"]
