"""The dashboard's pages; each registers itself with ``dash.register_page`` when ``dashboard.app`` imports it.

Each page module keeps its callback bodies as plain functions (registered with
``dash.callback(...)(function)``), so tests and the benchmark can call them directly.
"""
