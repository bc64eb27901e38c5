"""Prompts → masks: prompt normalisation, predict, tiled decoding, object planning, coordinates."""
