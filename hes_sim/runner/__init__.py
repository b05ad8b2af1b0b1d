"""Running a scenario end to end: private broker, head-end, fleet, report."""
