"""Image → embeddings: the encoder runner, the embedding pipeline, tiling and the zarr store.

- :mod:`.embeddings`: the front — ``compute_embeddings``, ``embed_image``, ``open_embeddings``,
  ``VolumeEmbeddings``.
- :mod:`.pipeline`: ``SliceEmbedder`` (batches model inputs, encodes, writes to memory or the store)
  and ``embed_plane`` (one 2D image, directly).
- :mod:`.reader`: ``SliceReader`` (hash, normalise, cut tiles) and ``prefetch`` (the reader thread).
- :mod:`.layout`: ``image_layout`` and reading slices, windows and pieces of an image.
- :mod:`.encoder`: precision and ``torch.compile``; :mod:`.tiling`: the tile grid.
- :mod:`.store` (with :mod:`.store_layout`, :mod:`.store_locks`, :mod:`.filelock`): the zarr cache.
"""
