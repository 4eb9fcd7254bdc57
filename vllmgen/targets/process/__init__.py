"""The process runtime (runtime.kind: process): a planned container as a host process."""
