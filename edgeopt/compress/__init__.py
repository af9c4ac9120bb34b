"""Structured pruning, Tucker decomposition, and the distillation fine-tuning they share."""
