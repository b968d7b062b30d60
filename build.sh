#!/usr/bin/env bash
# Builds Crest (out/crest, Native AOT) and runs its main job as a demo.
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
scripts/publish.sh
exec scripts/demo.sh
