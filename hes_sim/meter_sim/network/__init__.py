"""The simulated 4G network between the meters and the broker: cells, modems, outages."""
