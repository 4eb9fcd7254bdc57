"""Runtime targets: one package per runtime (``runtime.kind``)."""
