"""HTML pages ingest serves to patients (no API key: a capability link)."""
