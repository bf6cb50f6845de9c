#!/usr/bin/env python3
"""Python baselines for `encoder_bench`: PyTorch + transformers, onnxruntime fp32 and onnxruntime
dynamic int8, run on the very token ids the Rust benchmark used (same length-sorted buckets, each
padded to its longest row, mean pooling), on the same number of threads.

Called by `encoder_bench` with `--ids FILE` (JSON: {"batches": [[[ids...], ...], ...],
"single": [ids...], "runs": N}); prints one JSON object per available backend:
{"backend": "...", "seconds": s, "single_ms_p50": ms, "single_vector": [mean-pooled state of
"single", so the caller can check that the same model ran]}. Backends whose packages are not importable
are skipped with a line {"backend": "...", "skipped": "why"}. Exit status 0 unless something broke.
"""

import argparse
import json
import os
import statistics
import sys
import time


def padded(rows, pad_id):
    seq = max(len(r) for r in rows)
    ids = [r + [pad_id] * (seq - len(r)) for r in rows]
    mask = [[1] * len(r) + [0] * (seq - len(r)) for r in rows]
    return ids, mask


def timed(run_batch, batches, single, runs):
    start = time.perf_counter()
    for rows in batches:
        run_batch(rows)
    seconds = time.perf_counter() - start
    latencies = []
    for _ in range(runs):
        t = time.perf_counter()
        run_batch([single])
        latencies.append((time.perf_counter() - t) * 1e3)
    return seconds, statistics.median(latencies)


def torch_backend(model_dir, threads):
    import torch
    from transformers import AutoModel

    torch.set_num_threads(threads)
    model = AutoModel.from_pretrained(model_dir).eval()

    def run_batch(rows):
        ids, mask = padded(rows, model.config.pad_token_id or 0)
        ids, mask = torch.tensor(ids), torch.tensor(mask)
        with torch.inference_mode():
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).float()
            return ((hidden * m).sum(1) / m.sum(1)).numpy()

    return model, run_batch


def export_onnx(model, model_dir, cache):
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    path = os.path.join(cache, "model_fp32.onnx")
    if not os.path.exists(path):
        ids = torch.ones((2, 8), dtype=torch.long)
        torch.onnx.export(
            LastHiddenState(model).eval(),
            (ids, torch.ones_like(ids)),
            path,
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "last_hidden_state": {0: "batch", 1: "seq"},
            },
            opset_version=17,
            dynamo=False,
        )
    return path


def onnx_backend(path, threads, pad_id):
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run_batch(rows):
        ids, mask = padded(rows, pad_id)
        ids, mask = np.array(ids, dtype=np.int64), np.array(mask, dtype=np.int64)
        (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
        m = mask[..., None].astype(np.float32)
        return (hidden * m).sum(1) / m.sum(1)

    return run_batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Hugging Face model directory")
    parser.add_argument("--ids", required=True, help="JSON file written by encoder_bench")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/augur/onnx"))
    args = parser.parse_args()
    work = json.load(open(args.ids))
    batches, single, runs = work["batches"], work["single"], work["runs"]

    def report(backend, run_batch):
        seconds, p50 = timed(run_batch, batches, single, runs)
        vector = [float(x) for x in run_batch([single])[0]]
        line = {"backend": backend, "seconds": seconds, "single_ms_p50": p50, "single_vector": vector}
        print(json.dumps(line), flush=True)

    try:
        model, run_torch = torch_backend(args.model, args.threads)
    except ImportError as e:
        print(json.dumps({"backend": "pytorch", "skipped": str(e)}))
        print(json.dumps({"backend": "onnxruntime", "skipped": "exporting needs torch"}))
        return
    report("pytorch", run_torch)

    try:
        import onnxruntime  # noqa: F401
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        print(json.dumps({"backend": "onnxruntime", "skipped": str(e)}))
        return
    cache = os.path.join(args.cache, os.path.basename(os.path.abspath(args.model)))
    os.makedirs(cache, exist_ok=True)
    fp32 = export_onnx(model, args.model, cache)
    pad_id = model.config.pad_token_id or 0
    report("onnxruntime fp32", onnx_backend(fp32, args.threads, pad_id))
    int8 = os.path.join(cache, "model_int8.onnx")
    if not os.path.exists(int8):
        quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
    report("onnxruntime int8", onnx_backend(int8, args.threads, pad_id))


if __name__ == "__main__":
    sys.exit(main())
