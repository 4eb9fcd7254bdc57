"""Review: what a change does (plans compared), the pre-commit hook, the spec reference."""
