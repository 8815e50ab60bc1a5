"""The EVM itself, without any network: addresses (EIP-55), ABI calls of ERC-20s and Multicall3, hostile-answer checks."""
