"""Schedules for upkeep: nightly checks of every book, weekly Postgres maintenance."""
