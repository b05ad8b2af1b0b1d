"""Ingest spread over worker processes on the brokers' shared subscription."""
