"""Legacy implicit INT8 calibration for TensorRT 8.6-10.x (V100 needs <= 10.4, Jetson 10.x).

The calibrator feeds the same stratified subset as ``edgeopt calibrate`` (same preprocessing),
keeps device buffers in torch CUDA tensors, and reads/writes a calibration cache keyed by the ONNX
hash, the images and the batch size. It fails loudly when TensorRT got zero batches.
"""

from __future__ import annotations

from pathlib import Path

from edgeopt.artifacts import Manifest, sha256_file
from edgeopt.build import BuildOptions, CalibrationCache, calibration_key
from edgeopt.data.presets import Preprocess
from edgeopt.errors import VerificationError


def make_legacy_calibrator_trt10(trt, kind: str, onnx: Path, manifest: Manifest, options: BuildOptions, input_name: str):
    """An ``IInt8EntropyCalibrator2`` or ``IInt8MinMaxCalibrator`` over the calibration subset."""
    import torch

    from edgeopt.calibrate import calibration_set, iter_calibration_batches

    preprocess = Preprocess.from_dict(manifest.preprocess)
    cset = calibration_set(options.calib_data, manifest.classes, options.num_images, options.calib_batch_size)
    key = calibration_key(manifest.sha256 or sha256_file(onnx), kind, [sha256_file(s.path) for s in cset.samples],
                          options.calib_batch_size)
    cache = CalibrationCache(options.timing_cache.parent if options.timing_cache else onnx.parent, manifest.sha256 or "", kind, key)
    base = trt.IInt8EntropyCalibrator2 if kind == "entropy" else trt.IInt8MinMaxCalibrator

    class Calibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.batches = iter_calibration_batches(cset, preprocess, options.calib_batch_size)
            self.served = 0
            self.cache_hit = False
            self.device_batch = None

        def get_batch_size(self) -> int:
            return options.calib_batch_size

        def get_batch(self, names):
            batch = next(self.batches, None)
            if batch is None:
                return None  # TensorRT calls this from C++: errors are raised after the build instead
            self.device_batch = torch.from_numpy(batch).cuda()
            self.served += 1
            return [int(self.device_batch.data_ptr())]

        def read_calibration_cache(self):
            data = cache.read()
            self.cache_hit = data is not None
            return data

    calibrator = Calibrator()
    calibrator.source = f"{options.calib_data} ({len(cset.samples)} images, batch {options.calib_batch_size})"
    return calibrator


def check_calibrator(calibrator) -> None:
    """After the build: fail loudly when TensorRT calibrated on nothing (no batches and no valid cache)."""
    if calibrator.served == 0 and not calibrator.cache_hit:
        raise VerificationError(f"the TensorRT calibrator got zero batches from {calibrator.source} and had no valid cache")
