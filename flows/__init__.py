"""Prefect flows: backup, restore (with its pre-restore safety backup as a subflow),
retention (one tenant, and a sweep over all), verify, and the concurrency-limit setup."""
