"""babeltower.models."""
