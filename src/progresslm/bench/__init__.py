"""Building and describing benchmarks from trajectories of any source."""
