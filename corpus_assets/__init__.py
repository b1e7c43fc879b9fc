"""The corpus Dagster code location: book assets by stage, jobs and the `corpus` CLI."""
