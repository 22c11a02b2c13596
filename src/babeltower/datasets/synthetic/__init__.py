"""babeltower.datasets.synthetic."""
