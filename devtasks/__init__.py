"""The tasks behind ``./dev``: set up a checkout and run the system or its tests locally.

Standard library only, because it runs before the venv exists (it is what creates
it).  One module per step: :mod:`.venv`, :mod:`.redis_server`, :mod:`.postgres`,
:mod:`.testdeps`; the commands in :mod:`.up`, :mod:`.down` and :mod:`.__main__`.
See docs/local-setup.md.
"""
