"""Analyses of what is transferred: pure functions over models and data, each returning a frozen result."""
