"""Stage 2b, cross-field rules: what no single field can know on its own (core runs them all)."""
