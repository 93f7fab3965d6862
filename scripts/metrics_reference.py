#!/usr/bin/python3
"""Independent NumPy reimplementation of faceri's evaluation metrics.

Reads a directory of raw little-endian inputs and prints one "key value" line
per figure, so tests/test_metrics_numpy.c can compare them with the C library.
Written from the definitions in include/faceri/metrics.h and verification.h,
not from the C code: whole score matrices, boolean masks and np.unique where
the C code uses tiles, sorted sweeps and counters.

Inputs in DIR:
  params.txt        "key value" lines: n_items, dim, allpairs_items, max_rank,
                    open_rank, fars, fpirs, edc_fmr, edc_fnmr, pauc_limit,
                    erc_step, erc_max, erc_fmrs (lists comma-separated)
  embeddings.f32    [n_items, dim] float32, L2-normalised rows
  labels.i32        [n_items] int32
  quality.f64       [n_items] float64, NaN = no quality
  gallery.i64       item indices of the gallery templates (one per identity)
  probes.i64        item indices of the probes
  pairs.txt         LFW pairs format; name "id%03d" = label, image number k =
                    the label's k-th item in item order (1-based); a pair with
                    an image that does not exist is skipped

Usage: scripts/metrics_reference.py DIR
"""
import math
import sys

import numpy as np


def read_params(path):
    params = {}
    with open(path) as f:
        for line in f:
            key, value = line.split(None, 1)
            params[key] = value.strip()
    return params


def floats(text):
    return [float(x) for x in text.split(",")]


def threshold_at_rate(nonmated, rate):
    """(floor(rate*n)+1)-th largest non-mated score; -inf when that is past the end."""
    n = len(nonmated)
    allowed = math.floor(rate * n + 1e-9)
    if allowed >= n:
        return -math.inf
    return float(np.sort(nonmated)[::-1][allowed])


def out(key, value):
    print(f"{key} {float(value)!r}")


def verification(prefix, gen, imp, fars):
    gen = np.asarray(gen, dtype=np.float64)
    imp = np.asarray(imp, dtype=np.float64)
    out(prefix + ".genuine", len(gen))
    out(prefix + ".impostor", len(imp))
    # Balanced accuracy at every candidate threshold (every distinct score).
    cand = np.unique(np.concatenate([gen, imp]))
    gs, im_s = np.sort(gen), np.sort(imp)
    tpr = (len(gs) - np.searchsorted(gs, cand, side="right")) / len(gs)
    tnr = np.searchsorted(im_s, cand, side="right") / len(im_s)
    acc = 0.5 * (tpr + tnr)
    best = int(np.argmax(acc))
    out(prefix + ".accuracy", acc[best])
    out(prefix + ".threshold", cand[best])
    out(prefix + ".genuine_mean", gen.mean())
    out(prefix + ".impostor_mean", imp.mean())
    for k, far in enumerate(fars):
        t = threshold_at_rate(imp, far)
        out(f"{prefix}.tpr_far[{k}]", np.mean(gen > t))
        out(f"{prefix}.thr_far[{k}]", t)


def read_pairs(path, labels):
    # (name, k) -> item: the k-th item of that label, in item order.
    items_of = {}
    for i, lab in enumerate(labels):
        items_of.setdefault(int(lab), []).append(i)

    def item(name, number):
        lab = int(name[2:])
        lst = items_of.get(lab, [])
        return lst[number - 1] if 1 <= number <= len(lst) else None

    with open(path) as f:
        lines = [ln.split() for ln in f if ln.strip()]
    header = [int(x) for x in lines[0]]
    folds, per = (header if len(header) == 2 else [1, header[0]])
    body = lines[1:]
    assert len(body) == 2 * folds * per, "pair count does not match the header"
    a, b, genuine, skipped = [], [], [], 0
    for f in body:
        if len(f) == 3:
            ia, ib, g = item(f[0], int(f[1])), item(f[0], int(f[2])), True
        else:
            ia, ib, g = item(f[0], int(f[1])), item(f[2], int(f[3])), False
        if ia is None or ib is None:
            skipped += 1
            continue
        a.append(ia)
        b.append(ib)
        genuine.append(g)
    return np.array(a), np.array(b), np.array(genuine, dtype=bool), skipped


def identification(emb, labels, gallery, probes, max_rank, open_rank, fpirs):
    G, P = emb[gallery], emb[probes]
    gl, pl = labels[gallery], labels[probes]
    S = P @ G.T  # whole matrix: fine at test sizes
    col = {int(l): j for j, l in enumerate(gl)}
    mate = np.array([col.get(int(l), -1) for l in pl])
    mated = mate >= 0
    rows = np.nonzero(mated)[0]
    mated_score = S[rows, mate[rows]]
    others = S[rows].copy()
    others[np.arange(len(rows)), mate[rows]] = -np.inf
    rank = 1 + np.sum(others >= mated_score[:, None], axis=1)
    top_nonmated = S[~mated].max(axis=1)
    out("ident.n_mated", mated.sum())
    out("ident.n_nonmated", (~mated).sum())
    out("ident.rank_sum", rank.sum())
    for r in range(1, max_rank + 1):
        out(f"ident.cmc[{r - 1}]", np.mean(rank <= r))
    for k, f in enumerate(fpirs):
        t = threshold_at_rate(top_nonmated, f)
        out(f"ident.tpir[{k}]", np.mean((rank <= open_rank) & (mated_score > t)))
        out(f"ident.tpir_thr[{k}]", t)
        out(f"ident.fpir_achieved[{k}]", np.mean(top_nonmated > t))


def edc(prefix, gen, gq, threshold, limit):
    n = len(gen)
    fail = gen <= threshold
    xs, ys = [0.0], [fail.sum() / n]
    for level in np.unique(gq):  # ascending; -inf (no quality) first
        keep = gq > level
        kept = keep.sum()
        if kept == 0:
            break
        xs.append((n - kept) / n)
        ys.append((fail & keep).sum() / kept)
    # Trapezoids up to the limit, interpolated there, flat past the last point.
    area, reached = 0.0, False
    for k in range(len(xs) - 1):
        x0, x1, y0, y1 = xs[k], xs[k + 1], ys[k], ys[k + 1]
        if x1 <= limit:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            y_lim = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += (limit - x0) * (y0 + y_lim) / 2
            reached = True
            break
    if not reached:
        area += (limit - xs[-1]) * ys[-1]
    out(prefix + ".threshold", threshold)
    out(prefix + ".n_points", len(xs))
    for k in range(len(xs)):
        out(f"{prefix}.discard[{k}]", xs[k])
        out(f"{prefix}.fnmr[{k}]", ys[k])
    out(prefix + ".pauc", area)
    out(prefix + ".pauc_relative", area / (ys[0] * limit) if ys[0] > 0 else math.nan)


def erc(gen, gq, imp, iq, step, max_discard, fmrs):
    scores = np.concatenate([gen, imp])
    is_gen = np.concatenate([np.ones(len(gen), bool), np.zeros(len(imp), bool)])
    order = np.argsort(np.concatenate([gq, iq]), kind="stable")
    n = len(scores)
    s = 0
    while s * step <= max_discard + 1e-9:
        dropped = min(n, math.floor(s * step * n + 1e-9))
        keep = order[dropped:]
        g_left, i_left = scores[keep][is_gen[keep]], scores[keep][~is_gen[keep]]
        out(f"erc.genuine_left[{s}]", len(g_left))
        out(f"erc.impostor_left[{s}]", len(i_left))
        for f, fmr in enumerate(fmrs):
            if len(g_left) == 0 or len(i_left) == 0:
                t, fnmr = math.nan, math.nan
            else:
                t = threshold_at_rate(i_left, fmr)
                fnmr = np.mean(g_left <= t)
            out(f"erc.fnmr[{s}][{f}]", fnmr)
            out(f"erc.thr[{s}][{f}]", t)
        s += 1
    out("erc.n_steps", s)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    p = read_params(d + "/params.txt")
    n, dim = int(p["n_items"]), int(p["dim"])
    emb = np.fromfile(d + "/embeddings.f32", dtype="<f4").reshape(n, dim).astype(np.float64)
    labels = np.fromfile(d + "/labels.i32", dtype="<i4")
    quality = np.fromfile(d + "/quality.f64", dtype="<f8")
    gallery = np.fromfile(d + "/gallery.i64", dtype="<i8")
    probes = np.fromfile(d + "/probes.i64", dtype="<i8")
    assert len(labels) == n and len(quality) == n

    # Verification over the pair list.
    a, b, genuine, skipped = read_pairs(d + "/pairs.txt", labels)
    scores = np.einsum("ij,ij->i", emb[a], emb[b])
    out("pairs.skipped", skipped)
    fars = floats(p["fars"])
    verification("pairs", scores[genuine], scores[~genuine], fars)

    # Verification over all pairs of the first allpairs_items items.
    m = int(p["allpairs_items"])
    iu, ju = np.triu_indices(m, k=1)
    s_all = np.einsum("ij,ij->i", emb[iu], emb[ju])
    same = labels[iu] == labels[ju]
    verification("allpairs", s_all[same], s_all[~same], fars)

    identification(emb, labels, gallery, probes, int(p["max_rank"]), int(p["open_rank"]), floats(p["fpirs"]))

    # Quality: pair quality = min of the two, NaN -> -inf.
    q = np.where(np.isnan(quality), -np.inf, quality)
    pq = np.minimum(q[a], q[b])
    gen, gq, imp, iq = scores[genuine], pq[genuine], scores[~genuine], pq[~genuine]
    limit = float(p["pauc_limit"])
    edc("edc_fmr", gen, gq, threshold_at_rate(imp, float(p["edc_fmr"])), limit)
    # Starting FNMR: at most floor(r*n) genuine scores <= t, t the largest score below the next one.
    gs = np.sort(gen)
    k = math.floor(float(p["edc_fnmr"]) * len(gs) + 1e-9)
    below = gs[gs < gs[k]] if k < len(gs) else gs
    t_fnmr = math.inf if k >= len(gs) else (below.max() if len(below) else -math.inf)
    edc("edc_fnmr", gen, gq, t_fnmr, limit)
    erc(gen, gq, imp, iq, float(p["erc_step"]), float(p["erc_max"]), floats(p["erc_fmrs"]))


if __name__ == "__main__":
    main()
