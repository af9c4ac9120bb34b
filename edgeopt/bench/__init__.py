"""Latency and submit-time harness, the baseline, score formulas, machine info."""
