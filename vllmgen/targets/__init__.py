"""Runtime targets: one package per ``runtime.kind`` (its part of the spec, its artifacts, its engine),
and ``registry``, the one table that lists them."""
