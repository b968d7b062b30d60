#!/usr/bin/env bash
# The demo: what `crest` can do today. Until dump and restore land, it checks the kernel
# features the engine relies on.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== crest --version"; out/crest --version
echo "== crest check --all"; out/crest check --all
