"""Running clinicq: the supervisor, embedded servers, migrations and the CLI."""
