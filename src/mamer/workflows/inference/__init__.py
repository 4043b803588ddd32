"""Inference: the recognizer, batch jobs over files, transcripts (ASR) and timelines of long recordings."""
