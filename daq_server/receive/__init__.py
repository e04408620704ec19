"""Receive: detector packets (or a bsread stream) into assembled images in a ring buffer."""
