"""Image → embeddings → masks, without napari."""
