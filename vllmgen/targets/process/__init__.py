"""The process runtime (runtime.kind: process): a planned container as a host process (`vllm serve` from a
Python environment; run/start/stop.sh and a systemd unit)."""
