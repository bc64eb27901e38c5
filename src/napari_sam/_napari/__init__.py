"""napari layers ↔ napari-sam prompts and labels. Knows napari layer types; no Qt."""
