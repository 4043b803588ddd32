"""Training: one run of the unified (or a dedicated) model, on one process or under torchrun."""
