"""Serve: the DAQ service, its REST API, command line, security, statistics and the built-in simulator."""
