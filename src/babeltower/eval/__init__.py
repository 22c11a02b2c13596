"""babeltower.eval."""
