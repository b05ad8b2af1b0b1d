"""Commands to meters: their lifecycle (pure), storage and dispatch."""
