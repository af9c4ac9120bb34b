"""Serving: Triton model-repository entries."""
