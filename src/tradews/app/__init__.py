"""Composition root: settings, the command line, and the server process."""
