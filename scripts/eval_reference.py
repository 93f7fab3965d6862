#!/usr/bin/python3
"""Independent NumPy version of `faceri eval --all-pairs` on a results file.

Reads the results file with h5py, applies the protocols of include/faceri/eval.h
(items with status 0 and a label; all pairs; templates = normalised mean of each
identity's first K items, the rest probes; open set = identities with an odd
label id left out of the gallery; pair quality = the lower of the two) with
whole matrices, and prints "key value" lines that tests/test_eval.c compares
with the C figures. The EDC/ERC sweeps are those of scripts/metrics_reference.py
(written from the metric definitions, not from the C code).

Usage: scripts/eval_reference.py RESULTS.h5 [K] [COLUMN...]
"""
import math
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import metrics_reference as mr  # noqa: E402

FARS = [1e-1, 1e-2, 1e-3, 1e-4]
FPIRS = [0.3, 0.1, 0.01]
MAX_RANK, OPEN_RANK = 20, 20


def out(key, value):
    print(f"{key} {float(value)!r}")


def search(templates, tlabels, probes, plabels):
    S = probes @ templates.T
    col = {int(l): j for j, l in enumerate(tlabels)}
    mate = np.array([col.get(int(l), -1) for l in plabels])
    mated = mate >= 0
    rows = np.nonzero(mated)[0]
    ms = S[rows, mate[rows]]
    others = S[rows].copy()
    others[np.arange(len(rows)), mate[rows]] = -np.inf
    rank = 1 + np.sum(others >= ms[:, None], axis=1)
    return rank, ms, S[~mated].max(axis=1) if (~mated).any() else np.array([])


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    f = h5py.File(sys.argv[1], "r")
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    columns = sys.argv[3:]
    status, labels = f["items/status"][:], f["items/label"][:]
    used = np.nonzero((status == 0) & (labels >= 0))[0]
    emb = f["embedding"][:][used].astype(np.float64)
    lab = labels[used]
    out("items", len(status))
    out("items_used", len(used))

    iu, ju = np.triu_indices(len(used), k=1)
    s = (emb @ emb.T)[iu, ju]  # the whole matrix: fine up to a few 10k items
    same = lab[iu] == lab[ju]
    mr.verification("ver", s[same], s[~same], FARS)

    # Templates: normalised mean of the first k items of each label (item order).
    pos = np.zeros(len(used), dtype=np.int64)
    seen = {}
    for i, l in enumerate(lab):
        pos[i] = seen.get(int(l), 0)
        seen[int(l)] = pos[i] + 1
    tl = np.array(sorted(seen))
    raw = np.array([emb[(lab == l) & (pos < k)].astype(np.float32).sum(axis=0) for l in tl], dtype=np.float64)
    templates = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    probe = pos >= k
    P, pl = emb[probe], lab[probe]
    out("templates", len(tl))
    out("probes", probe.sum())
    rank, _, _ = search(templates, tl, P, pl)
    for r in range(1, MAX_RANK + 1):
        out(f"cmc[{r - 1}]", np.mean(rank <= r))
    even = tl % 2 == 0
    rank, ms, top_nm = search(templates[even], tl[even], P, pl)
    out("open_mated", len(rank))
    out("open_nonmated", len(top_nm))
    for j, fp in enumerate(FPIRS):
        t = mr.threshold_at_rate(top_nm, fp)
        out(f"tpir[{j}]", np.mean((rank <= OPEN_RANK) & (ms > t)))
        out(f"tpir_thr[{j}]", t)

    for c in columns:
        q = f[c][:][used].astype(np.float64)
        q = np.where(np.isnan(q), -np.inf, q)
        pq = np.minimum(q[iu], q[ju])
        gen, gq, imp, iq = s[same], pq[same], s[~same], pq[~same]
        mr.out = lambda key, value, c=c: out(f"{c}.{key}", value)
        mr.edc("edc", gen, gq, mr.threshold_at_rate(imp, 1e-3), 0.2)
        mr.erc(gen, gq, imp, iq, 0.05, 0.95, [1e-2, 1e-3, 1e-4])


if __name__ == "__main__":
    main()
