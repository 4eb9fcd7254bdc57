"""The Docker runtime (runtime.kind: docker): its spec part, Dockerfile/daemon.json/compose, docker command
lines, daemon.json keys, and the runner's Docker SDK engine."""
