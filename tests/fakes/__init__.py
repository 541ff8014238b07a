"""Local fake servers playing external providers (the edge of the world)."""
