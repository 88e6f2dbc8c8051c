"""Faust agents: intake, render, projector, dead letters. They read, call pure
code (``imaging``, ``projections.folds``) and write; nothing else."""
