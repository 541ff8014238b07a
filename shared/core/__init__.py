"""The bottom layer: settings, the database and its models, identities and
PII rules, payload validation, the task queue and the channel table. Imports
nothing else from clinicq."""
