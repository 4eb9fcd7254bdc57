"""The process target: ``vllm serve`` from a Python environment on each host (run/start/stop.sh, a systemd unit)."""
