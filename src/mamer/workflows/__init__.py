"""Workflows: what a user runs (training, evaluation, experiments, inference, service, export) on top of the core."""
