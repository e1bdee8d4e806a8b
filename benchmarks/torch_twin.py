"""The same network and optimizer in PyTorch, for the benchmarks' comparisons.

torch is passed in rather than imported, so that importing this module never
needs it.
"""
from __future__ import annotations


def torch_network(model, torch):
    """The same layers in torch.nn with minicnn's weights and dtype; a final Softmax is dropped."""
    import minicnn.layers as L
    nn = torch.nn

    class MinPool(nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.pool = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)

        def forward(self, x):
            return -self.pool(-x)

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
        else:
            raise TypeError(f"no PyTorch equivalent for {layer!r}")
        modules.append(m)
    return nn.Sequential(*modules)


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
