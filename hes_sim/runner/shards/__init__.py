"""The fleet spread over worker processes: each runs the meters of its shard (assigned by
meter id) and reports through events, which the run's process re-emits on its own bus, so
tallies, metrics and the report see one fleet (as locust's workers report to its master).
"""
