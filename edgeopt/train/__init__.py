"""Training: the loop (train_one_epoch/evaluate), distillation (online teachers or a soft-label bank), DDP."""
