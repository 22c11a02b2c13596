"""babeltower.datasets."""
