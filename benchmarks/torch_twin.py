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

    class SpatialPyramidPool(nn.Module):
        """SPP as one writes it in PyTorch: adaptive pools onto l x l grids, flattened, concatenated."""

        def __init__(self, layer):
            super().__init__()
            make = nn.AdaptiveMaxPool2d if layer.mode == "max" else nn.AdaptiveAvgPool2d
            self.pools = nn.ModuleList(make(level) for level in layer.levels)

        def forward(self, x):
            return torch.cat([pool(x).flatten(1) for pool in self.pools], dim=1)

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
