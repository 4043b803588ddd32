"""Experiments: the paper's comparison (systems x seeds x folds) and the quickstart."""
