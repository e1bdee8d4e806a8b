"""The same network and optimizer in PyTorch, for the benchmarks' comparisons.

torch is passed in rather than imported, so that importing this module never
needs it.
"""
from __future__ import annotations


def optional_torch(threads: int):
    """torch, set to ``threads`` threads, or None (saying so) where it cannot be imported."""
    try:
        import torch
    except ImportError:
        print("torch not importable: minicnn figures only")
        return None
    torch.set_num_threads(threads)
    return torch


def torch_network(model, torch):
    """The same layers in torch.nn with minicnn's weights (and running statistics) and dtype; a final
    Softmax is dropped.  Dropout layers draw their own masks, at the same rate."""
    import minicnn.layers as L
    nn = torch.nn

    class MinPool(nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.pool = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)

        def forward(self, x):
            return -self.pool(-x)

    class StochasticPool(nn.Module):   # PyTorch has none: training and evaluation from unfold
        def __init__(self, layer):
            super().__init__()
            self.kernel_size, self.stride = layer.kernel_size, layer.stride

        def forward(self, x):
            if self.training:
                return torch_stochastic_pool(torch, x, self.kernel_size, self.stride)
            return torch_stochastic_pool_eval(torch, x, self.kernel_size, self.stride)
    class SpatialPyramidPool(nn.Module):
        """SPP as one writes it in PyTorch: adaptive pools onto l x l grids, flattened, concatenated."""

        def __init__(self, layer):
            super().__init__()
            make = nn.AdaptiveMaxPool2d if layer.mode == "max" else nn.AdaptiveAvgPool2d
            self.pools = nn.ModuleList(make(level) for level in layer.levels)

        def forward(self, x):
            return torch.cat([pool(x).flatten(1) for pool in self.pools], dim=1)
    class Blur(nn.Module):
        """BlurPool2D (after a stride-1 max pooling for MaxBlurPool2D): reflect pad, depthwise conv."""

        def __init__(self, layer, max_window=None):
            super().__init__()
            self.max_window, self.stride, f = max_window, layer.stride, layer.filter_size
            self.pads = [(f - 1) // 2, f // 2] * 2
            self.register_buffer("taps", torch.from_numpy(layer.taps))

        def forward(self, x):
            F = torch.nn.functional
            if self.max_window is not None:
                x = F.max_pool2d(x, self.max_window, stride=1)
            t = self.taps.to(x.dtype)
            filt = (t[:, None] * t[None, :])[None, None].repeat(x.shape[1], 1, 1, 1)
            padded = F.pad(x, self.pads, mode="reflect") if max(self.pads) else x
            return F.conv2d(padded, filt, stride=self.stride, groups=x.shape[1])

    class Mix(nn.Module):
        """MixedPool2D (theta) or GatedPool2D (w): sigmoid(...) * max + (1 - sigmoid(...)) * avg."""

        def __init__(self, layer):
            super().__init__()
            self.kernel_size, self.stride = layer.kernel_size, layer.stride
            (key, value), = layer.params.items()
            self.key = key
            self.param = nn.Parameter(torch.from_numpy(value.copy()))

        def forward(self, x):
            F = torch.nn.functional
            mx, av = F.max_pool2d(x, self.kernel_size, self.stride), F.avg_pool2d(x, self.kernel_size, self.stride)
            if self.key == "theta":
                g = torch.sigmoid(self.param)
            else:
                n, c, h, w = x.shape
                windows = F.unfold(x.reshape(n * c, 1, h, w), self.kernel_size, stride=self.stride)
                g = torch.sigmoid((self.param[None, :, None] * windows).sum(1)).reshape(mx.shape)
            return g * mx + (1 - g) * av

    modules = []
    for layer in model.layers:
        if isinstance(layer, L.Conv2D):
            weight = torch.from_numpy(layer.params["W"])
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                          dtype=weight.dtype)
            with torch.no_grad():
                m.weight.copy_(weight)
                m.bias.copy_(torch.from_numpy(layer.params["b"]))
        elif isinstance(layer, L.Dense):
            weight = torch.from_numpy(layer.params["W"].T)  # minicnn keeps (in, out); torch (out, in)
            m = nn.Linear(layer.in_features, layer.out_features, dtype=weight.dtype)
            with torch.no_grad():
                m.weight.copy_(weight)
                m.bias.copy_(torch.from_numpy(layer.params["b"]))
        elif isinstance(layer, L.ReLU):
            m = nn.ReLU()
        elif isinstance(layer, L.MaxPool2D):
            m = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, L.MinPool2D):
            m = MinPool(layer)
        elif isinstance(layer, L.AvgPool2D):
            m = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding,
                             count_include_pad=layer.count_include_pad)
        elif isinstance(layer, L.GlobalAvgPool2D):
            m = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        elif isinstance(layer, L.GlobalMaxPool2D):
            m = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())
        elif isinstance(layer, L.FractionalMaxPool2D):   # draws its own samples: a twin for speed
            m = nn.FractionalMaxPool2d(layer.kernel_size, output_size=layer.output_size,
                                       output_ratio=layer.output_ratio)
        elif isinstance(layer, L.StochasticPool2D):
            m = StochasticPool(layer)
        # pooling family: LP, adaptive and spatial pyramid pooling (LPPool2d equals LPPool2D on the
        # non-negative inputs a ReLU gives)
        elif isinstance(layer, L.LPPool2D):
            m = nn.LPPool2d(layer.norm_type, layer.kernel_size, layer.stride)
        elif isinstance(layer, L.AdaptiveAvgPool2D):
            m = nn.AdaptiveAvgPool2d(layer.output_size)
        elif isinstance(layer, L.AdaptiveMaxPool2D):
            m = nn.AdaptiveMaxPool2d(layer.output_size)
        elif isinstance(layer, L.SpatialPyramidPool2D):
            m = SpatialPyramidPool(layer)
        elif isinstance(layer, L.Flatten):
            m = nn.Flatten()
        elif isinstance(layer, L.BlurPool2D):
            m = Blur(layer)
        elif isinstance(layer, L.MaxBlurPool2D):
            m = Blur(layer, layer.kernel_size)
        elif isinstance(layer, (L.MixedPool2D, L.GatedPool2D)):
            m = Mix(layer)
        elif isinstance(layer, L.Softmax):
            continue  # folded into F.cross_entropy, as minicnn folds it into its loss
        # normalisation, regularisation, activations
        elif isinstance(layer, (L.BatchNorm2D, L.BatchNorm1D)):
            running = torch.from_numpy(layer.state["running_mean"])
            kind = nn.BatchNorm2d if isinstance(layer, L.BatchNorm2D) else nn.BatchNorm1d
            m = kind(layer.num_features, eps=layer.eps, momentum=layer.momentum, affine=layer.affine,
                     dtype=running.dtype)
            with torch.no_grad():
                m.running_mean.copy_(running)
                m.running_var.copy_(torch.from_numpy(layer.state["running_var"]))
                if layer.affine:
                    m.weight.copy_(torch.from_numpy(layer.params["gamma"]))
                    m.bias.copy_(torch.from_numpy(layer.params["beta"]))
        elif isinstance(layer, L.Dropout):
            m = nn.Dropout(layer.p)       # its own masks: same rate, not the same draws
        elif isinstance(layer, L.Dropout2D):
            m = nn.Dropout2d(layer.p)
        elif isinstance(layer, L.LeakyReLU):
            m = nn.LeakyReLU(layer.negative_slope)
        elif isinstance(layer, L.Tanh):
            m = nn.Tanh()
        elif isinstance(layer, L.Sigmoid):
            m = nn.Sigmoid()
        elif isinstance(layer, L.GELU):
            m = nn.GELU(approximate=layer.approximate)
        else:
            raise TypeError(f"no PyTorch equivalent for {layer!r}")
        modules.append(m)
    return nn.Sequential(*modules)


def _windows(torch, t, kernel_size, stride):
    """(N, C, H_out * W_out, kh * kw) windows of t (no padding), and (H_out, W_out)."""
    (kh, kw), (sh, sw) = kernel_size, stride
    n, c, h, w = t.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    cols = torch.nn.functional.unfold(t, (kh, kw), stride=(sh, sw)).view(n, c, kh * kw, oh * ow)
    return cols.transpose(2, 3), (oh, ow)


def torch_stochastic_pool(torch, t, kernel_size, stride):
    """Stochastic pooling in training, the fastest composition we found: each window's running sums
    of its positive parts against one uniform draw, the first one above it gathered (autograd's
    backward goes through gather and fold); 0 for a window without a positive element."""
    cols, (oh, ow) = _windows(torch, t, kernel_size, stride)
    cs = cols.detach().clamp(min=0).cumsum(-1)
    total = cs[..., -1:]
    draw = torch.rand(*cols.shape[:3], 1, dtype=t.dtype) * total
    pick = (cs <= draw).sum(-1, keepdim=True).clamp(max=cols.shape[-1] - 1)
    return (cols.gather(-1, pick) * (total > 0)).view(t.shape[0], t.shape[1], oh, ow)


def torch_stochastic_pool_eval(torch, t, kernel_size, stride):
    """Stochastic pooling in evaluation: sum(w^2) / sum(w), w = max(a, 0); 0 when sum(w) = 0."""
    cols, (oh, ow) = _windows(torch, t, kernel_size, stride)
    w = cols.clamp(min=0)
    total = w.sum(-1)
    return ((w * w).sum(-1) / torch.where(total > 0, total, torch.ones_like(total))).view(
        t.shape[0], t.shape[1], oh, ow)


def torch_optimizer(config, params, torch):
    """torch.optim twin of config.optimizer (SGD or Adam, same hyperparameters).

    config.optimizer.options is resolved (every default filled in), so a key
    missing here is a KeyError, not a silently different optimizer.
    """
    opts = config.optimizer.options
    if config.optimizer.name == "sgd":
        return torch.optim.SGD(params, lr=opts["lr"], momentum=opts["momentum"], weight_decay=opts["weight_decay"])
    return torch.optim.Adam(params, lr=opts["lr"], betas=(opts["beta1"], opts["beta2"]), eps=opts["eps"],
                            weight_decay=opts["weight_decay"])
