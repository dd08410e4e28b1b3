"""Prefect tasks: one engine call each, with the retry, cache and logging options of
:mod:`tasks.common`. No business logic lives here; it is in the engine (``daai_backup``)."""
