"""The scheduler service: claims due reminders/surveys and runs periodic jobs."""
