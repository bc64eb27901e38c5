"""Synthetic microscopy data (tests, sample data, training)."""
