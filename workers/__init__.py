"""Celery workers: thin tasks that call one function in shared/."""
