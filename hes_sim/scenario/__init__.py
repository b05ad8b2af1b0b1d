"""Scenarios (what to run) and reports (what happened), validated by pydantic."""
