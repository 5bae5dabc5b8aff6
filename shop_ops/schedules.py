"""The schedules of the code location (none yet: backups, k6 runs and cost reports bring theirs)."""

import dagster as dg

SCHEDULES: list[dg.ScheduleDefinition] = []
