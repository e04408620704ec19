"""Acquire: the server's side of an acquisition (state machine, image consumer, writer processes)."""
