"""Projections: pure folds of events into state, the tables that hold them, and the read-only views."""
