#!/usr/bin/env bash
# `just bench`: runs the benchmark parts in order. Each part is bench/scripts/<part>.sh, prints
# its Markdown table on stdout and writes its own section of docs/benchmarks.md.
# Usage: run.sh [part...]   (default: every part in `parts` below)
set -Eeuo pipefail
# A failing command stops the benchmark; say which, rather than exit with no word.
trap 'echo "run.sh: line $LINENO: \`$BASH_COMMAND\` failed (exit $?)" >&2' ERR
bench="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Parts run by default, in order. Add a part by adding bench/scripts/<part>.sh and its name here.
parts=(allocator controllers dns proxy)

selected=("$@")
[[ ${#selected[@]} -gt 0 ]] || selected=("${parts[@]}")
for part in "${selected[@]}"; do
  script="$bench/$part.sh"
  [[ -x "$script" ]] || { echo "run.sh: no benchmark part '$part' ($script)" >&2; exit 2; }
  echo "==> bench: $part" >&2
  "$script"
done
