"""Sensors: the library sensor turns file changes into ingest and removal runs."""
