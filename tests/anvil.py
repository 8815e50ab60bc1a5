"""A real Anvil node for tests: started on a free port of 127.0.0.1, driven over JSON-RPC, stopped by its pid.

Anvil comes from the npm package pinned in tests/evm/package.json; install it
with ``npm ci --prefix tests/evm``.  Contracts are deployed from the compiled
``tests/evm/contracts/*.bin`` (see tests/evm/compile.sh)::

    with running_anvil(tmp_path, 31337) as node:
        token = node.deploy("TestToken", token_args("Big Test Token", "BIG", 18))
        node.mint(token, wallet, 123456789012345678901234567)
        node.set_balance(wallet, 10**18)
"""

from __future__ import annotations

import contextlib
import platform
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

EVM_DIR = Path(__file__).resolve().parent / "evm"
CONTRACTS = EVM_DIR / "contracts"
START_TIMEOUT_S = 15.0
RECEIPT_TIMEOUT_S = 5.0
MINT = "0x40c10f19"  # mint(address,uint256)


def anvil_binary() -> Path:
    """The anvil of tests/evm/node_modules: the platform package's binary, found whatever the platform."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, "*")
    pattern = f"node_modules/@foundry-rs/anvil-{platform.system().lower()}-{arch}/bin/anvil"
    found = sorted(EVM_DIR.glob(pattern))
    if not found:
        pytest.fail(f"no anvil binary matches tests/evm/{pattern}: run `npm ci --prefix tests/evm` first")
    return found[0]


class Anvil:
    """A running anvil: its URL, and JSON-RPC calls to it."""

    def __init__(self, url: str):
        self.url = url
        self._http = httpx.Client(timeout=10)

    def rpc(self, method: str, *params: Any) -> Any:
        answer = self._http.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        body = answer.json()
        assert "error" not in body, f"{method} failed: {body['error']}"
        return body["result"]

    def transact(self, data: str, to: str | None = None) -> dict[str, Any]:
        """Send ``data`` from the first dev account, which anvil signs for; return the receipt once mined."""
        sender = self.rpc("eth_accounts")[0]
        tx = {"from": sender, "data": data, "gas": hex(3_000_000)}
        if to is not None:
            tx["to"] = to
        receipt = self.wait_for_receipt(self.rpc("eth_sendTransaction", tx))
        assert receipt["status"] == "0x1", receipt
        return receipt

    def wait_for_receipt(self, tx_hash: str, timeout: float = RECEIPT_TIMEOUT_S) -> dict[str, Any]:
        """The receipt of ``tx_hash``.  Anvil mines each transaction at once, yet may answer before the
        receipt is stored, hence the short wait."""
        deadline = time.monotonic() + timeout
        while (receipt := self.rpc("eth_getTransactionReceipt", tx_hash)) is None:
            assert time.monotonic() < deadline, f"transaction {tx_hash} was not mined within {timeout:g} s"
            time.sleep(0.01)
        return receipt

    def deploy(self, contract: str, constructor_args: str = "") -> str:
        """Deploy tests/evm/contracts/<contract>.bin; return its address, in lower case."""
        creation = (CONTRACTS / f"{contract}.bin").read_text().strip()
        return self.transact("0x" + creation + constructor_args)["contractAddress"].lower()

    def mint(self, token: str, to: str, amount: int) -> None:
        """Mint ``amount`` base units of the TestToken (or LegacyToken) ``token`` to ``to``."""
        self.transact(MINT + word(int(to, 16)) + word(amount), to=token)

    def set_balance(self, address: str, wei: int) -> None:
        """Set the native balance of ``address`` to exactly ``wei``."""
        self.rpc("anvil_setBalance", address, hex(wei))

    def close(self) -> None:
        self._http.close()


@contextlib.contextmanager
def running_anvil(tmp_path: Path, chain_id: int) -> Iterator[Anvil]:
    """Start anvil with ``chain_id`` on a free port of 127.0.0.1, wait until it answers; stop it by its pid after."""
    log_path = tmp_path / f"anvil-{chain_id}.log"
    with log_path.open("wb") as log:
        # Port 0: anvil picks a free port and prints it, so there is no race for a port chosen here.
        process = subprocess.Popen([str(anvil_binary()), "--host", "127.0.0.1", "--port", "0",
                                    "--chain-id", str(chain_id)], stdout=log, stderr=subprocess.STDOUT)
    anvil = None
    try:
        anvil = Anvil(_wait_for_listening(process, log_path))
        yield anvil
    finally:
        if anvil is not None:
            anvil.close()
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_for_listening(process: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        match = re.search(r"Listening on (127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
        if match:
            return f"http://{match.group(1)}"
        if process.poll() is not None:
            pytest.fail(f"anvil exited with {process.returncode}: {log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"anvil did not listen within {START_TIMEOUT_S} s")


def word(value: int) -> str:
    """``value`` as one 32-byte ABI word, in hex without 0x."""
    return f"{value:064x}"


def token_args(name: str, symbol: str, decimals: int) -> str:
    """ABI encoding of TestToken's ``(string name, string symbol, uint8 decimals)``, in hex without 0x."""
    def tail(text: str) -> str:
        data = text.encode()
        return word(len(data)) + data.hex().ljust(64 * ((len(data) + 31) // 32), "0")

    name_tail = tail(name)
    return word(3 * 32) + word(3 * 32 + len(name_tail) // 2) + word(decimals) + name_tail + tail(symbol)
