"""babeltower.train."""
