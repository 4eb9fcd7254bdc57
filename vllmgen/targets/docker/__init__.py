"""The Docker runtime: docker command lines, daemon.json keys, and the runner's Docker SDK engine."""
