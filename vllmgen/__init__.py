"""vllmgen: compile a declarative vLLM deployment spec into reviewed, committed artifacts."""

__version__ = "0.1.0"
