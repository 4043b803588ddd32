"""Predictions at scale: the recognizer as a Ray Data actor pool over folders, manifests and tar shards."""
