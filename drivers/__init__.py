"""Hardware protocols and their simulators."""
