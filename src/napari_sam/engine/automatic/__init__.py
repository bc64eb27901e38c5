"""Automatic instance segmentation: the mask generator (AMG), its point grids, clean-up and NMS."""
