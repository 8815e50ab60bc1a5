"""The checkout's ``.venv``: created with Python >= 3.11, ``pip install -e '.[test,dev]'`` when pyproject.toml changed."""

from __future__ import annotations

import os
import shutil
import subprocess

from .common import LOGS, ROOT, VENV, VENV_PY, DevError, have, say, sha256_of, show_tail, stamp_matches, warn

EXTRAS = ".[test,dev]"
STAMP = VENV / ".dev-pyproject.sha256"
_IS_311 = "import sys; sys.exit(sys.version_info < (3, 11))"


def _version(python: str) -> str:
    out = subprocess.run([python, "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).strip()


def find_python() -> str:
    """The first of python3, python3.13, python3.12, python3.11 on PATH that is at least 3.11."""
    for candidate in ("python3", "python3.13", "python3.12", "python3.11"):
        if not have(candidate):
            continue
        if subprocess.run([candidate, "-c", _IS_311], capture_output=True).returncode == 0:
            return candidate
        warn(f"venv: {candidate} is {_version(candidate)}; Python >= 3.11 is required")
    raise DevError("Python >= 3.11 is required (python3 on PATH is too old or missing): install python3 >= 3.11")


def ensure_venv() -> None:
    """Create or repair .venv, install the project into it when pyproject.toml changed, put it first on PATH."""
    LOGS.mkdir(parents=True, exist_ok=True)
    if VENV.is_dir() and subprocess.run([str(VENV_PY), "-c", _IS_311], capture_output=True).returncode != 0:
        say("venv: .venv is broken or older than Python 3.11, recreating it")
        shutil.rmtree(VENV)
    if not os.access(VENV_PY, os.X_OK):
        python = find_python()
        say(f"venv: creating .venv with {python} ({_version(python)})")
        with open(LOGS / "venv.log", "wb") as log:
            created = subprocess.run([python, "-m", "venv", str(VENV)], stdout=log, stderr=subprocess.STDOUT)
        if created.returncode != 0:
            shutil.rmtree(VENV, ignore_errors=True)
            show_tail(LOGS / "venv.log", 5)
            raise DevError("python3 -m venv failed: install python3-venv  (sudo apt-get install python3-venv)")
    want = sha256_of(ROOT / "pyproject.toml")
    if not stamp_matches(STAMP, want):
        say(f"venv: pip install -e '{EXTRAS}' (log: .local/logs/pip.log)")
        with open(LOGS / "pip.log", "wb") as log:
            installed = subprocess.run([str(VENV / "bin" / "pip"), "install", "--disable-pip-version-check",
                                        "-e", EXTRAS], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if installed.returncode != 0:
            show_tail(LOGS / "pip.log")
            raise DevError("pip install failed; see .local/logs/pip.log")
        STAMP.write_text(want + "\n")
        say(f"venv: ready ({_version(str(VENV_PY))})")
    else:
        say(f"venv: up to date ({_version(str(VENV_PY))})")
    os.environ["PATH"] = f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["VIRTUAL_ENV"] = str(VENV)
