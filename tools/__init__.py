"""Developer tools run from a checkout (``python -m tools.<name>``); never imported by the running system."""
