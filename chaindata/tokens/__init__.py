"""Which tokens a wallet may hold, beyond its native coin: token lists and discovery from the chain.

* :mod:`.lists`: token lists in the Uniswap token-list format (one shipped, more from ``TOKEN_LIST_URLS``),
  giving each known token's metadata and its ``listed`` flag;
* :mod:`.discovery`: the ERC-20 ``Transfer`` logs to a wallet, scanned incrementally;
* :mod:`.candidates`: the union of configured, listed and discovered tokens that a balance read considers.
"""
