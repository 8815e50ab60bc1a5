// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice A contract that answers each function selector exactly as scripted,
/// to play tokens that misbehave: a `balanceOf` that reverts, no `decimals()`,
/// a `bytes32` symbol, answers of the wrong length, huge or non-UTF-8 strings,
/// a call that burns all its gas.  Test chains only: anyone may script it.
contract ScriptedToken {
    uint8 public constant ANSWER = 0;
    uint8 public constant REVERT = 1;
    uint8 public constant BURN_GAS = 2;

    mapping(bytes4 => bytes) private answers;
    mapping(bytes4 => uint8) private modes;

    /// @notice From now on, a call of `selector` returns the raw bytes `answer`
    /// (no ABI encoding is added), reverts, or burns all its gas, per `mode`.
    function script(bytes4 selector, bytes calldata answer, uint8 mode) external {
        answers[selector] = answer;
        modes[selector] = mode;
    }

    fallback(bytes calldata) external returns (bytes memory) {
        uint8 mode = modes[msg.sig];
        if (mode == REVERT) {
            revert("scripted revert");
        }
        if (mode == BURN_GAS) {
            while (true) {}
        }
        return answers[msg.sig];
    }
}
