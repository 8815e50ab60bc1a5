"""``portfolio-sync``: the command line for operating the system (``[project.scripts]`` in pyproject.toml).

    portfolio-sync request USER_ID WALLET [--chains 1,10] [--priority high] [--force] [--wait]
    portfolio-sync request-batch FILE|-          CSV: user_id,wallet_address[,chain_ids as 1;10][,priority]
    portfolio-sync show OPERATION_ID
    portfolio-sync wallet ADDRESS [--user U] [--limit N]
    portfolio-sync portfolio ADDRESS --user U [--chains 1,10] [--json]
    portfolio-sync status
    portfolio-sync dead-letters list [filters]  /  dead-letters redrive [QUEUE:ID ...|--all] [--dry-run]
    portfolio-sync track|pause|resume|untrack USER_ID WALLET
    portfolio-sync events [--after ID] [--count N]
    portfolio-sync migrate [--create-database]
    portfolio-sync demo [--wait] [--timeout SECONDS]      (also: python -m cli demo --wait)

Results go to stdout (``--json`` for machine-readable output where it applies), messages and
progress to stderr.  Exit codes: 0 done; 1 any other failure; 2 invalid input, usage or
configuration; 3 not found; 4 Redis or PostgreSQL unavailable.  Secrets are never printed.

The package is thin: ``cli.arguments`` parses, ``cli.main`` checks the configuration and maps
errors to exit codes, ``cli.commands`` (and ``cli.demo``, ``cli.migrate``) call the producer API
``actors``, storage's read side and the read-only inspection helpers, and ``cli.output`` formats.
"""
