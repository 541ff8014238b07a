"""Domain logic shared by ingest, workers and scheduler."""
