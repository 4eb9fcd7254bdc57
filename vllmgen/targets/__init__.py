"""What is particular to one runtime: one package per ``runtime.kind`` (its part of the spec, its artifacts,
its engine) and ``registry``, the one table that lists them. Validate/render never import an engine (the
Docker SDK, host processes): the registry names each by import path, for the runner alone."""
