"""Evaluation: per-view scores, robustness to dropped frames/tokens, reports, plots and model cards."""
