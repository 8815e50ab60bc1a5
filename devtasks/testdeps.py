"""What ``./dev test`` needs beyond the venv: Anvil (npm ci in tests/evm) and Debian's chromium for the browser tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .common import LOGS, ROOT, DevError, have, say, sha256_of, show_tail, stamp_matches

EVM_DIR = ROOT / "tests" / "evm"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def ensure_node_modules() -> None:
    lock = EVM_DIR / "package-lock.json"
    if not lock.is_file():
        return
    stamp = EVM_DIR / "node_modules" / ".dev-lock.sha256"
    want = sha256_of(lock)
    if (EVM_DIR / "node_modules").is_dir() and stamp_matches(stamp, want):
        say("npm: tests/evm/node_modules up to date")
        return
    if not have("npm"):
        raise DevError("npm is needed for the EVM tests (Anvil): sudo apt-get install nodejs npm")
    say("npm: npm ci --prefix tests/evm (log: .local/logs/npm.log)")
    with open(LOGS / "npm.log", "wb") as log:
        done = subprocess.run(["npm", "ci", "--prefix", str(EVM_DIR), "--no-audit", "--no-fund"], cwd=ROOT,
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        show_tail(LOGS / "npm.log")
        raise DevError("npm ci failed; see .local/logs/npm.log")
    stamp.write_text(want + "\n")


def ensure_chromium() -> None:
    if os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK):
        say(f"chromium: {CHROMIUM}, {CHROMEDRIVER}")
        return
    command = "apt-get update && apt-get install -y chromium chromium-driver"
    if os.geteuid() != 0:
        raise DevError(f"browser tests need Debian's chromium and chromium-driver: sudo sh -c '{command}'")
    if not have("apt-get"):
        raise DevError(f"browser tests need chromium and chromedriver at {CHROMIUM}, {CHROMEDRIVER} (no apt-get here)")
    say(f"chromium: {command} (log: .local/logs/apt.log)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(LOGS / "apt.log", "wb") as log:
        ok = all(subprocess.run(args, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT).returncode == 0
                 for args in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium", "chromium-driver"]))
    if not ok:
        show_tail(LOGS / "apt.log")
        raise DevError("installing chromium failed; see .local/logs/apt.log")
    say("chromium: installed")
