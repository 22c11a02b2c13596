"""babeltower.modalities."""
