"""When messages go out: the reminder/survey plan, appointments, quiet hours."""
