"""The one layer that talks SQL: the audit trail, holdings and tracked wallets in PostgreSQL.

Statements live in ``queries.sql`` as named blocks; the modules here bind
parameters and shape results.  Nothing here knows about Redis or Dramatiq.
"""
