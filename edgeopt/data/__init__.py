"""Data layer: crops folders, TACO conversion, synthetic data, preprocessing presets."""

from edgeopt.data.folder import (
    FolderScan,
    Sample,
    scan_folder,
    split_scan,
    stratified_split,
)
from edgeopt.data.presets import Preprocess

__all__ = ["FolderScan", "Preprocess", "Sample", "scan_folder", "split_scan", "stratified_split"]
