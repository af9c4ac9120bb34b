"""Legacy implicit INT8 calibration for TensorRT 8.6-10.x (V100 needs <= 10.4, Jetson 10.x).

The calibrator feeds the same stratified subset as ``edgeopt calibrate`` (same preprocessing) at
exactly the calibration profile's batch: TensorRT reads ``opt`` samples from each pointer
``get_batch`` returns, so a batch of any other size would be read past or only partly. The last
batch is filled up with images from the start of the subset, so no image is dropped. It overrides
every method TensorRT's Python trampoline calls (a missing override is called as a null function),
reads and writes a calibration cache keyed by the TensorRT version, the ONNX hash, the images and
the batch size, and fails loudly when TensorRT got zero batches or a batch did not fit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifacts import atomic_write_bytes, sha256_file
from edgeopt.data.presets import Preprocess
from edgeopt.errors import VerificationError
from edgeopt.trt.device import Device


def calibration_key(onnx_sha256: str, calibrator: str, image_hashes: list[str], batch_size: int, trt_version: str) -> str:
    """A cache is valid only for the same ONNX, calibrator, images, batch size and TensorRT version
    (a cache from another TensorRT is not offered to this one)."""
    digest = hashlib.sha256()
    for part in (trt_version, onnx_sha256, calibrator, str(batch_size), *image_hashes):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


class CalibrationCache:
    """``<dir>/<onnx sha256[:16]>.<calibrator>.calib`` + a JSON sidecar holding the full key.

    A cache whose key no longer matches (ONNX, images or batch size changed) is not used; TensorRT
    recalibrates and the new cache replaces it atomically.
    """

    def __init__(self, directory: Path, onnx_sha256: str, calibrator: str, key: str) -> None:
        self.path = Path(directory) / f"{onnx_sha256[:16]}.{calibrator}.calib"
        self.sidecar = self.path.with_name(self.path.name + ".json")
        self.key = key

    def read(self) -> bytes | None:
        if not self.path.exists() or not self.sidecar.exists():
            return None
        try:
            meta = json.loads(self.sidecar.read_text())
        except ValueError:
            return None
        return self.path.read_bytes() if meta.get("key") == self.key else None

    def write(self, data: bytes) -> None:
        atomic_write_bytes(self.path, bytes(data))
        atomic_write_bytes(self.sidecar, json.dumps({"key": self.key}).encode())


def make_legacy_calibrator_trt10(trt, kind: str, onnx: Path, onnx_sha256: str, classes: list[str],
                                 preprocess: Preprocess, calib_data: Path, num_images: int, batch_shape: tuple[int, ...],
                                 input_dtype: np.dtype, cache_dir: Path, device: Device):
    """An ``IInt8EntropyCalibrator2`` or ``IInt8MinMaxCalibrator`` serving batches of ``batch_shape``."""
    from edgeopt.data.calibration import calibration_set, padded_paths

    batch_size = int(batch_shape[0])
    cset = calibration_set(calib_data, classes, num_images, 1)
    paths = [s.path for s in cset.samples]
    key = calibration_key(onnx_sha256, kind, [sha256_file(p) for p in paths], batch_size, trt.__version__)
    cache = CalibrationCache(cache_dir, onnx_sha256, kind, key)
    base = trt.IInt8EntropyCalibrator2 if kind == "entropy" else trt.IInt8MinMaxCalibrator

    class Calibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.batches = preprocess.iter_batches(padded_paths(paths, batch_size), batch_size)
            self.buffer = device.empty(batch_shape, input_dtype)  # one buffer, refilled per batch
            self.staged: Any = None
            self.served = 0
            self.cache_hit = False  # a cache was offered; it was used only if no batch was then served
            self.cache_written = False
            self.error: str | None = None  # why calibration stopped early, said after the build
            self.cache_path = cache.path
            self.source = f"{calib_data} ({len(paths)} images, batch {batch_size})"

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self.batches, None)
            if batch is None:
                return None  # TensorRT calls this from C++: errors are raised after the build instead
            if tuple(batch.shape) != tuple(batch_shape):
                self.error = (f"calibration batch of shape {tuple(batch.shape)} does not match the network's calibration "
                              f"input {tuple(batch_shape)}: the preprocessing ({preprocess.size} px) and the ONNX input "
                              "disagree; pass the ONNX's own `img_size`")
                return None
            self.staged = device.upload(batch, input_dtype)
            device.run([(self.buffer, self.staged)], lambda stream: None)
            device.synchronize()  # TensorRT reads the buffer on its own stream
            self.served += 1
            return [device.address(self.buffer)]

        def read_calibration_cache(self) -> bytes | None:
            data = cache.read()
            self.cache_hit = data is not None
            return data

        def write_calibration_cache(self, data) -> None:
            cache.write(bytes(data))
            self.cache_written = True

    return Calibrator()


def check_calibrator(calibrator) -> None:
    """After the build: say why calibration stopped early, and fail loudly when TensorRT calibrated on
    nothing (no batches and no valid cache)."""
    if calibrator.error:
        raise VerificationError(calibrator.error)
    if calibrator.served == 0 and not calibrator.cache_hit:
        raise VerificationError(f"the TensorRT calibrator got zero batches from {calibrator.source} and had no valid cache")
