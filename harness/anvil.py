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
import dataclasses
import platform
import random
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector, keccak

from harness.fake_http import FakeHttpServer, Reply, Request

EVM_DIR = Path(__file__).resolve().parents[1] / "tests" / "evm"
CONTRACTS = EVM_DIR / "contracts"
START_TIMEOUT_S = 15.0
RECEIPT_TIMEOUT_S = 5.0
MINT = "0x40c10f19"  # mint(address,uint256)
#: Where Multicall3 lives on real chains; the tests put it there on Anvil (see :meth:`Anvil.install_multicall3`).
MULTICALL3 = "0xca11bde05977b3631167028862be2a173976ca11"
#: viem's module holding Multicall3's compiled creation code (viem is pinned in tests/evm/package.json).
VIEM_CONTRACTS = EVM_DIR / "node_modules" / "viem" / "_esm" / "constants" / "contracts.js"
# ScriptedToken's modes (tests/evm/contracts/ScriptedToken.sol).
ANSWER, REVERT, BURN_GAS = 0, 1, 2
# TestToken's storage slots: name, symbol, decimals, totalSupply, balanceOf.
_NAME_SLOT, _SYMBOL_SLOT, _DECIMALS_SLOT, _SUPPLY_SLOT, _BALANCES_SLOT = range(5)


def anvil_binary() -> Path:
    """The anvil of tests/evm/node_modules: the platform package's binary, found whatever the platform."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, "*")
    pattern = f"node_modules/@foundry-rs/anvil-{platform.system().lower()}-{arch}/bin/anvil"
    found = sorted(EVM_DIR.glob(pattern))
    if not found:
        raise RuntimeError(f"no anvil binary matches tests/evm/{pattern}: run `npm ci --prefix tests/evm` first")
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

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """The results of ``calls`` sent as one JSON-RPC batch; every call must succeed."""
        answer = self._http.post(self.url, json=[{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                                                 for i, (m, p) in enumerate(calls)]).json()
        by_id = {item["id"]: item for item in answer}
        failed = [item for item in answer if "error" in item]
        assert not failed, f"{len(failed)} calls failed, e.g. {failed[0]}"
        return [by_id[i]["result"] for i in range(len(calls))]

    def install_multicall3(self) -> None:
        """Put Multicall3 at its canonical address, as on every major chain: deploy viem's compiled copy,
        then copy its runtime code there (``anvil_setCode``)."""
        match = re.search(r"export const multicall3Bytecode = '(0x[0-9a-f]+)'", VIEM_CONTRACTS.read_text())
        assert match, f"no multicall3Bytecode in {VIEM_CONTRACTS}"
        deployed = self.transact(match[1])["contractAddress"]
        self.rpc("anvil_setCode", MULTICALL3, self.rpc("eth_getCode", deployed, "latest"))

    def runtime_code(self, contract: str, constructor_args: str = "") -> str:
        """The runtime code of tests/evm/contracts/<contract>.bin, deployed once to read it."""
        return self.rpc("eth_getCode", self.deploy(contract, constructor_args), "latest")

    def plant_tokens(self, holder: str, specs: list[tuple[str, str, int, int]], seed: int = 13) -> list[str]:
        """TestTokens at fresh addresses, each ``(name, symbol, decimals, balance of holder)`` of ``specs``,
        written straight into code and storage (a few batched requests, however many tokens)."""
        code = self.runtime_code("TestToken", token_args("Template", "TMPL", 18))
        rng = random.Random(seed)
        addresses = ["0x" + rng.randbytes(20).hex() for _ in specs]
        calls: list[tuple[str, list[Any]]] = []
        for address, (name, symbol, decimals, balance) in zip(addresses, specs):
            calls.append(("anvil_setCode", [address, code]))
            for slot, value in ((_NAME_SLOT, short_string(name)), (_SYMBOL_SLOT, short_string(symbol)),
                                (_DECIMALS_SLOT, word(decimals)), (_SUPPLY_SLOT, word(balance)),
                                (mapping_slot(holder, _BALANCES_SLOT), word(balance))):
                calls.append(("anvil_setStorageAt", [address, hex(slot), "0x" + value]))
        for start in range(0, len(calls), 500):
            self.batch(calls[start:start + 500])
        return addresses

    def script(self, token: str, signature: str, answer: bytes = b"", mode: int = ANSWER) -> None:
        """Have the ScriptedToken ``token`` answer calls of ``signature`` with the raw ``answer`` (or revert,
        or burn its gas, per ``mode``)."""
        selector = function_signature_to_4byte_selector(signature)
        data = function_signature_to_4byte_selector("script(bytes4,bytes,uint8)") + encode(
            ["bytes4", "bytes", "uint8"], [selector, answer, mode])
        self.transact("0x" + data.hex(), to=token)

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
            raise RuntimeError(f"anvil exited with {process.returncode}: {log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"anvil did not listen within {START_TIMEOUT_S} s")


def word(value: int) -> str:
    """``value`` as one 32-byte ABI word, in hex without 0x."""
    return f"{value:064x}"


def short_string(text: str) -> str:
    """How Solidity stores a ``string`` shorter than 32 bytes in its slot: the bytes, then twice the length."""
    data = text.encode()
    assert len(data) < 32, text
    return data.hex().ljust(62, "0") + f"{2 * len(data):02x}"


def mapping_slot(key: str, slot: int) -> int:
    """The storage slot of ``mapping(address => ...)[key]`` declared at ``slot``."""
    return int.from_bytes(keccak(bytes.fromhex(word(int(key, 16)) + word(slot))), "big")


def token_args(name: str, symbol: str, decimals: int) -> str:
    """ABI encoding of TestToken's ``(string name, string symbol, uint8 decimals)``, in hex without 0x."""
    def tail(text: str) -> str:
        data = text.encode()
        return word(len(data)) + data.hex().ljust(64 * ((len(data) + 31) // 32), "0")

    name_tail = tail(name)
    return word(3 * 32) + word(3 * 32 + len(name_tail) // 2) + word(decimals) + name_tail + tail(symbol)


@dataclasses.dataclass(frozen=True)
class ManyTokens:
    """A wallet holding ``len(plain)`` TestTokens of assorted decimals and three odd tokens (see
    :func:`plant_many_tokens`); ``balances`` is what the node says each readable token holds."""

    plain: list[str]
    reverting: str  # balanceOf() reverts
    no_decimals: str  # has no decimals() (the call reverts), holds NO_DECIMALS_BALANCE
    bytes32_symbol: str  # a LegacyToken: bytes32 symbol() and name()
    balances: dict[str, int]

    @property
    def all(self) -> list[str]:
        return [*self.plain, self.reverting, self.no_decimals, self.bytes32_symbol]


NO_DECIMALS_BALANCE = 31337 * 10**9
LEGACY_BALANCE = 42 * 10**18


def plant_many_tokens(node: Anvil, wallet: str, count: int = 250, seed: int = 250) -> ManyTokens:
    """``count`` TestTokens held by ``wallet``, decimals cycling through 0..24, the first holding 2**256 - 1
    (the largest uint256), the others seeded random amounts up to 10**40; plus a token whose balanceOf()
    reverts, one without decimals(), and one whose symbol() is a bytes32."""
    rng = random.Random(seed)
    amounts = [2**256 - 1] + [rng.randrange(1, 10**rng.randrange(1, 41)) for _ in range(count - 1)]
    plain = node.plant_tokens(wallet, [(f"Many Token {i}", f"MT{i}", i % 25, amount)
                                       for i, amount in enumerate(amounts)], seed=seed)
    reverting = node.deploy("ScriptedToken")
    node.script(reverting, "balanceOf(address)", mode=REVERT)
    no_decimals = node.deploy("ScriptedToken")
    node.script(no_decimals, "balanceOf(address)", encode(["uint256"], [NO_DECIMALS_BALANCE]))
    node.script(no_decimals, "symbol()", encode(["string"], ["NODEC"]))
    node.script(no_decimals, "name()", encode(["string"], ["No Decimals Token"]))
    node.script(no_decimals, "decimals()", mode=REVERT)
    legacy = node.deploy("LegacyToken")
    node.mint(legacy, wallet, LEGACY_BALANCE)
    balances = dict(zip(plain, amounts)) | {no_decimals: NO_DECIMALS_BALANCE, legacy: LEGACY_BALANCE}
    return ManyTokens(plain, reverting, no_decimals, legacy, balances)


def balance_of(node: Anvil, token: str, wallet: str, block: int) -> int:
    """What ``token``'s balanceOf(``wallet``) answers at ``block``, asked of the node directly."""
    data = "0x" + (function_signature_to_4byte_selector("balanceOf(address)") + encode(["address"], [wallet])).hex()
    return int(node.rpc("eth_call", {"to": token, "data": data}, hex(block)), 16)


@contextlib.contextmanager
def recording_relay(target: str) -> Iterator[FakeHttpServer]:
    """A local HTTP server passing each POST on to ``target``; its ``requests`` are what it relayed."""
    with httpx.Client(timeout=10) as upstream:
        def relay(request: Request) -> Reply:
            answer = upstream.post(target, content=request.body, headers={"content-type": "application/json"})
            return answer.status_code, answer.content

        with FakeHttpServer(relay) as server:
            yield server
