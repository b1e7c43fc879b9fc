"""The corpus Dagster code location: book assets by stage, their checks and jobs; `definitions.py`
gathers them with `sensors/` and `schedules/`. The `corpus` CLI (`corpus_cli`) imports this, never
the reverse."""
