#!/usr/bin/python3
"""Writes a synthetic results file (docs/FORMAT.md, schema 2) for scale tests of
faceri audit / report / eval: N items x D dims, identities of equal size stored
together (as folders are), unit embeddings = identity centre + noise of varying
strength, quality/norm and quality/ers that follow the noise, a few exact
duplicates and relabelled items. Written in chunks: memory stays ~100 MB.

Usage: scripts/make_synthetic_results.py OUT.h5 [--items 1000000] [--dim 192]
       [--identities 1000] [--seed 1]
"""
import argparse
import time

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--identities", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    n, d, ids = a.items, a.dim, a.identities
    rng = np.random.default_rng(a.seed)
    centres = rng.standard_normal((ids, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    per = (n + ids - 1) // ids
    chunk = 65536
    vstr = h5py.string_dtype("utf-8")
    bstr = h5py.string_dtype("ascii")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with h5py.File(a.out, "w") as f:
        for k, v in {"format": "faceri-results", "faceri_version": "synthetic", "command_line": "make_synthetic_results.py",
                     "model_path": "", "model_sha256": "", "model_architecture": "synthetic", "device": "none",
                     "start_time": now, "end_time": now, "state": "complete"}.items():
            f.attrs[k] = v
        for k, v in {"schema_version": 2, "embedding_size": d, "items": n, "items_pending": 0, "items_ok": n,
                     "items_failed": 0, "items_skipped": 0}.items():
            f.attrs[k] = np.int64(v)

        def ds(name, dtype, shape=(n,), chunks=(4096,)):
            x = f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks)
            x.attrs["description"] = name
            return x

        key = ds("items/key", bstr)
        label = ds("items/label", "<i4")
        status = ds("items/status", "i1")
        error = ds("items/error", vstr)
        width, height = ds("items/width", "<i4"), ds("items/height", "<i4")
        shard = ds("items/shard", "<i8")
        emb = ds("embedding", "<f4", (n, d), (256, d))
        norm, ers, ri = ds("quality/norm", "<f4"), ds("quality/ers", "<f4"), ds("quality/ri", "<f4")
        f.create_dataset("labels/name", data=np.array([f"id{i:06d}" for i in range(ids)], dtype=object), dtype=vstr)
        for g0 in range(0, n, chunk):
            g1 = min(n, g0 + chunk)
            m = g1 - g0
            lab = (np.arange(g0, g1) // per).astype(np.int32)
            sigma = rng.uniform(0.3, 2.0, m).astype(np.float32)
            v = centres[lab] + sigma[:, None] * rng.standard_normal((m, d)).astype(np.float32) / np.sqrt(d)
            # about 1 in 10,000: an exact copy of the previous item (a duplicate)
            dup = np.nonzero(rng.random(m) < 1e-4)[0]
            dup = dup[dup > 0]
            v[dup] = v[dup - 1]
            # about 1 in 5,000: filed under the next identity (a mislabel)
            wrong = rng.random(m) < 2e-4
            lab_file = np.where(wrong, (lab + 1) % ids, lab).astype(np.int32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            emb[g0:g1] = v
            label[g0:g1] = lab_file
            key[g0:g1] = np.array([f"synthetic/id{l:06d}/{i:08d}.jpg" for l, i in zip(lab_file, range(g0, g1))], dtype=object)
            status[g0:g1] = 0
            error[g0:g1] = np.array([""] * m, dtype=object)
            width[g0:g1] = 112
            height[g0:g1] = 112
            shard[g0:g1] = np.arange(g0, g1) // 64
            norm[g0:g1] = (40 - 10 * sigma).astype(np.float32)
            ers[g0:g1] = (1.2 - 0.3 * sigma).astype(np.float32)
            ri[g0:g1] = np.nan
        n_shards = (n + 63) // 64
        for name, dtype, data in [("shards/id", "<i8", np.arange(n_shards)), ("shards/first", "<i8", np.arange(n_shards) * 64),
                                  ("shards/count", "<i8", np.minimum(64, n - np.arange(n_shards) * 64)),
                                  ("shards/attempts", "<i4", np.ones(n_shards)), ("shards/state", "i1", np.ones(n_shards)),
                                  ("shards/seconds", "<f4", np.ones(n_shards))]:
            f.create_dataset(name, data=data.astype(dtype))
        for name in ["shards/worker", "shards/device", "shards/reason"]:
            f.create_dataset(name, data=np.array([""] * n_shards, dtype=object), dtype=vstr)
        f.create_dataset("inputs/path", data=np.array([], dtype=object), dtype=vstr)


if __name__ == "__main__":
    main()
