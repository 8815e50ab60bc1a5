"""Hides the installed hiredis from the processes whose ``PYTHONPATH`` starts here (the ``nohiredis``
variant of bench.run_all), so redis-py falls back to its pure-Python parser and command packer: what
hiredis saves, measured beside the product in one run."""

raise ImportError("hiredis hidden by bench/proposals/no_hiredis")
