// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice A token in the style of early ERC-20s such as MKR, whose `symbol()`
/// and `name()` return `bytes32` instead of `string`; balances only, as the
/// tests read nothing else.
contract LegacyToken {
    bytes32 public constant symbol = "LGCY";
    bytes32 public constant name = "Legacy Token";
    uint256 public constant decimals = 18;
    mapping(address => uint256) public balanceOf;

    function mint(address to, uint256 value) external {
        balanceOf[to] += value;
    }
}
