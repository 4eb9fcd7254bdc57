"""Stage 1-2, the spec: YAML loaded with positions, the spec language (pydantic models) and its rules."""
