"""The ingest service: authenticate, validate, dedupe, enqueue, answer 202.

Rule 1: nothing here touches PostgreSQL on the webhook path.
"""
