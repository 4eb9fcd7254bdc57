"""Stage 3, plan: a valid Spec -> a pure, typed description of what runs where."""
