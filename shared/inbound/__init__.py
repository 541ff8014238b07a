"""Messages patients send: filing, reactions, automatic replies and the
automations that act on triage."""
