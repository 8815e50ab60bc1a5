"""What the project does with the Redis building blocks and PostgreSQL: accepting sync requests
(``intake``), running their attempts (``lifecycle``), recovering lost ones (``reconciler``),
scheduling (``scheduler``, ``tracking``), dead letters, and what all of it reports (``observe``,
``metrics``).  ``context`` holds the process-wide objects they share, built on first use.
"""
