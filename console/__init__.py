"""The clinic's own web service: the staff's console (board, conversations,
what needs a human, reports). A separate process from the minimal ingest; it
reads PostgreSQL and acts through the same domain functions as the API."""
