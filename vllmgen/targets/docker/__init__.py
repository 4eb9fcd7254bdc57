"""The Docker target: a container per node (Dockerfile, daemon.json, compose), driven through a Docker engine."""
