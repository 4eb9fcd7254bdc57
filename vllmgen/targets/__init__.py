"""What is particular to one runtime. Each target's package imports nothing itself: its engine (the
Docker SDK, host processes) is reached only through the runner, never by validate/render."""
