"""Image → embeddings: the encoder runner, the embedding pipeline, tiling and the zarr store."""
