#!/usr/bin/python3
"""The RI heads and loss terms of faceri/ri_heads.h as a PyTorch nn.Module, in float64
with autograd: an independent statement of the semantics (CBAM as Woo et al.'s
reference code, nn.BatchNorm2d in training mode, nn.SmoothL1Loss, nn.MSELoss) that
tests/test_ri_heads.c compares faceri's float64 reference against.

Usage: ri_heads_reference.py DIR. DIR/meta.txt holds "key value" lines (h w c dim batch
hidden kernel bn_eps tau l1_beta alpha beta gamma mu sigma detach proj_norm mse_sum_dim
ui_terms emb attention); DIR/<name>.f64 raw little-endian float64 arrays in faceri's
layouts (NHWC feature maps, FC weights [out, in] over the NHWC flattening, the spatial
conv OHWI): F, v, xi, flags, centre, mask (the regression input's scaled dropout mask)
and the tensors p<i>. Writes xi_hat, v_attn, loss (total l1 id mse), g<i>, dF, dv.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as Fn


def load(d, name, shape):
    return torch.from_numpy(np.fromfile(os.path.join(d, name + ".f64"), dtype="<f8").reshape(shape).copy())


def save(d, name, t):
    t.detach().numpy().astype("<f8").tofile(os.path.join(d, name + ".f64"))


class RIHeads(nn.Module):
    def __init__(s, h, w, c, dim, hidden, k, eps, emb, attention):
        super().__init__()
        s.emb, s.attention = emb, attention
        s.reg = nn.Linear(dim if emb else h * w * c, 1)
        if attention:
            s.mlp = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(), nn.Linear(hidden, c))
            s.conv = nn.Conv2d(2, 1, k, padding=k // 2, bias=False)
            s.bn = nn.BatchNorm2d(1, eps=eps, momentum=0.01)
            s.fc = nn.Linear(c * h * w, dim)

    def forward(s, f, v, mask):
        xi_hat = s.reg((v if s.emb else f.flatten(1)) * mask).squeeze(1)
        if not s.attention:
            return xi_hat, None
        avg = Fn.adaptive_avg_pool2d(f, 1).flatten(1)
        mx = Fn.adaptive_max_pool2d(f, 1).flatten(1)
        mc = torch.sigmoid(s.mlp(avg) + s.mlp(mx))
        f1 = f * mc[:, :, None, None]
        pooled = torch.cat([f1.max(1, keepdim=True)[0], f1.mean(1, keepdim=True)], 1)  # CBAM's ChannelPool order
        ms = torch.sigmoid(s.bn(s.conv(pooled)))
        return xi_hat, s.fc((f1 * ms).flatten(1))


def main():
    d = sys.argv[1]
    m = {}
    with open(os.path.join(d, "meta.txt")) as fh:
        for line in fh:
            k, val = line.split()
            m[k] = float(val)
    h, w, c, dim, B = (int(m[k]) for k in ("h", "w", "c", "dim", "batch"))
    emb, att = bool(m["emb"]), bool(m["attention"])
    hw = h * w
    net = RIHeads(h, w, c, dim, int(m["hidden"]), int(m["kernel"]), m["bn_eps"], emb, att).double()
    net.train()

    # faceri's NHWC flattening index p * c + ch  <->  torch's NCHW index ch * hw + p
    def nhwc_to_nchw_cols(wt):  # [..., hw * c] -> [..., c * hw]
        return wt.reshape(wt.shape[:-1] + (hw, c)).transpose(-1, -2).reshape(wt.shape[:-1] + (c * hw,))

    def nchw_to_nhwc_cols(wt):
        return wt.reshape(wt.shape[:-1] + (c, hw)).transpose(-1, -2).reshape(wt.shape[:-1] + (hw * c,))

    K = dim if emb else hw * c
    sizes = [K, 1]
    if att:
        R = int(m["hidden"])
        k = int(m["kernel"])
        sizes += [R * c, R, c * R, c, k * k * 2, 1, 1, dim * hw * c, dim]
    p = [load(d, "p%d" % i, (n,)) for i, n in enumerate(sizes)]
    with torch.no_grad():
        net.reg.weight.copy_(p[0].reshape(1, K) if emb else nhwc_to_nchw_cols(p[0].reshape(1, K)))
        net.reg.bias.copy_(p[1])
        if att:
            net.mlp[0].weight.copy_(p[2].reshape(R, c))
            net.mlp[0].bias.copy_(p[3])
            net.mlp[2].weight.copy_(p[4].reshape(c, R))
            net.mlp[2].bias.copy_(p[5])
            net.conv.weight.copy_(p[6].reshape(1, k, k, 2).permute(0, 3, 1, 2))
            net.bn.weight.copy_(p[7])
            net.bn.bias.copy_(p[8])
            net.fc.weight.copy_(nhwc_to_nchw_cols(p[9].reshape(dim, hw * c)))
            net.fc.bias.copy_(p[10])

    f = load(d, "F", (B, h, w, c)).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    v = load(d, "v", (B, dim)).requires_grad_(True)
    xi = load(d, "xi", (B,))
    ui = load(d, "flags", (B,)) != 0
    centre = load(d, "centre", (dim,))
    mask = load(d, "mask", (B, K))
    if not emb:
        mask = nhwc_to_nchw_cols(mask)

    xi_hat, v_attn = net(f, v, mask)
    ui_terms = int(m["ui_terms"])
    take = lambda bit: torch.where(ui, torch.tensor(bool(ui_terms & bit)), torch.tensor(True))
    r1 = take(1) & torch.isfinite(xi)
    rid = take(2)
    zero = torch.zeros((), dtype=torch.float64)
    l1 = Fn.smooth_l1_loss(xi_hat[r1], xi[r1], beta=m["l1_beta"]) if r1.any() else zero
    div = (xi_hat[rid] - m["mu"]) / m["sigma"]
    lid = torch.relu(m["tau"] - div).mean() if rid.any() else zero
    mse = zero
    if att:
        u = Fn.normalize(v, dim=1) if m["proj_norm"] else v
        cn = centre / centre.norm().clamp_min(1e-12)
        vp = u - (u @ cn)[:, None] * cn[None, :]
        if m["detach"]:
            vp = vp.detach()
        rm = take(4)
        if rm.any():
            diff = v_attn[rm] - vp[rm]
            mse = (diff ** 2).sum(1).mean() if m["mse_sum_dim"] else Fn.mse_loss(v_attn[rm], vp[rm])
    total = m["alpha"] * l1 + m["beta"] * lid + m["gamma"] * mse
    total.backward()

    save(d, "xi_hat", xi_hat)
    if att:
        save(d, "v_attn", v_attn)
    save(d, "loss", torch.stack([total, l1, lid, mse]))
    g = [net.reg.weight.grad.reshape(-1) if emb else nchw_to_nhwc_cols(net.reg.weight.grad).reshape(-1),
         net.reg.bias.grad]
    if att:
        g += [net.mlp[0].weight.grad.reshape(-1), net.mlp[0].bias.grad, net.mlp[2].weight.grad.reshape(-1),
              net.mlp[2].bias.grad, net.conv.weight.grad.permute(0, 2, 3, 1).reshape(-1), net.bn.weight.grad,
              net.bn.bias.grad, nchw_to_nhwc_cols(net.fc.weight.grad).reshape(-1), net.fc.bias.grad]
    for i, t in enumerate(g):
        save(d, "g%d" % i, t)
    save(d, "dF", (f.grad if f.grad is not None else torch.zeros_like(f)).permute(0, 2, 3, 1))
    save(d, "dv", v.grad if v.grad is not None else torch.zeros_like(v))


if __name__ == "__main__":
    main()
