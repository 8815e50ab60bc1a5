#!/usr/bin/env bash
# Regenerates contracts/*.bin (the creation bytecode the integration tests
# deploy) from contracts/*.sol with the solc-js pinned in package.json, so the
# tests themselves never need a compiler.  Run `npm ci` here first.
#
# Usage: tests/evm/compile.sh   (from anywhere)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
solcjs="$here/node_modules/.bin/solcjs"
if [[ ! -x "$solcjs" ]]; then
    echo "solcjs not found: run 'npm ci --prefix tests/evm' first" >&2
    exit 1
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

cd "$here/contracts"
for source in *.sol; do
    contract="${source%.sol}"
    "$solcjs" --bin --optimize --output-dir "$out" "$source"
    # solcjs names its output <file>_sol_<contract>.bin; keep only the contract
    # named like its file, and end it with a newline for tidy diffs.
    bin="$out/${contract}_sol_${contract}.bin"
    { cat "$bin"; echo; } > "$contract.bin"
    echo "wrote contracts/$contract.bin ($(wc -c < "$bin") hex chars)"
done
