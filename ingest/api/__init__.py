"""The authenticated REST API (`/api/...`), one module per resource."""
