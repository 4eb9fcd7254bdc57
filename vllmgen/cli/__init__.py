"""The vllmgen command line (lazy: entry answers render --check before importing the rest)."""
