"""Inbound webhooks: verify the sender, parse, publish — one module per sender."""
