"""INT8: activation ranges, Q/DQ and CPU writers, calibrate, PTQ remedies, accuracy-aware fallback, QAT."""
