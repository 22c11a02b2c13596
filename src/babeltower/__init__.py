"""babeltower: multilingual, multimodal models on one shared text encoder."""

__version__ = "0.1.0"
