"""Checkpoint -> ONNX (BN folded, slimmed, checked, parity-tested) and FP16 conversion."""
