"""Fine-tuning: the training loop, training data and evaluation metrics."""
