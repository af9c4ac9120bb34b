"""Training: the loop (train_one_epoch/validate), distillation (online teachers or a soft-label bank), DDP."""
