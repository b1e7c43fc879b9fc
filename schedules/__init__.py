"""Schedules for upkeep (nightly checks, index maintenance) land here with issue #4."""
