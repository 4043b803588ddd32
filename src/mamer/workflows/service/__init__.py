"""The HTTP service over a recognizer."""
