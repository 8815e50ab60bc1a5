"""The dashboard's pages, in Dash's own convention: each module calls ``dash.register_page`` at its
top, defines ``layout``, and declares its callbacks with ``@callback`` beside their functions (which
stay plain functions: tests and the benchmark call them directly).  ``dashboard.app`` has Dash load
them from this folder; import ``dashboard.app`` before importing a page module, or Dash would load
that module a second time and declare its callbacks twice.
"""
