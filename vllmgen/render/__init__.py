"""Stage 4-5, render and write: a Plan -> the bytes of every artifact, on disk, checked."""
