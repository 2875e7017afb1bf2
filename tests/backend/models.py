"""Small models for the backend tests: each exercises something Inductor handles specially."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 10)
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.net(x), y)


class DeepMLP(nn.Module):
    """Wide activations, small weights: what the forward saves sets the backward's peak."""

    def __init__(self, width: int = 512, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(64, width), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(width, 10))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.net(x), y)


class ConvBN(nn.Module):
    """Convolutions, BatchNorm (running stats are buffer mutations) and in-place ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = torch.relu_(self.b1(self.c1(x)))
        x = F.relu(self.b2(self.c2(x)), inplace=True)
        return F.cross_entropy(self.fc(x.mean((2, 3))), y)


class InplaceViews(nn.Module):
    """In-place ops, views, chunk, a buffer mutation and two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(32, 96)
        self.register_buffer("calls", torch.zeros(()))
        self.register_buffer("ema", torch.zeros(32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.add_(1)
        a, b, c = self.lin(x).chunk(3, dim=-1)
        a = a.view(-1, 4, 8).transpose(1, 2).reshape(-1, 32)
        b = b.clone()
        b.mul_(torch.sigmoid(c))
        b[:, :4] += 1.0
        self.ema.mul_(0.9).add_(0.1 * x.detach().mean(0))
        return a.sum(-1) + b.pow(2).mean(-1), (b * a).tanh()


class DenseBlock(nn.Module):
    """DenseNet's pattern: every layer reads the concatenation of all earlier outputs."""

    def __init__(self, layers: int = 3, growth: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, growth, 3, padding=1)
        self.convs = nn.ModuleList(
            nn.Conv2d(growth * (i + 1), growth, 3, padding=1) for i in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for conv in self.convs:
            features.append(F.relu(conv(torch.cat(features, dim=1))))
        return torch.cat(features, dim=1).mean(dim=(2, 3))


class GraphBreak(nn.Module):
    """A data-dependent Python branch splits the model into two compiled graphs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(32, 64)
        self.b = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(x))
        if h.sum().item() > 0:  # .item() breaks the graph
            h = h * 2
        return self.b(h).logsumexp(-1)


class TiedLM(nn.Module):
    """Input and output embeddings share one weight, so its gradient is a sum of two parts."""

    def __init__(self, vocab: int = 2048, width: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mix = nn.Linear(width, width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.mix(self.embed(ids)))
        logits = hidden @ self.embed.weight.t()
        return F.cross_entropy(logits.flatten(0, 1), ids.flatten())


class LossAndFeatures(nn.Module):
    """Returns its loss and, optionally, the features it computed on the way (2 MiB)."""

    def __init__(self, return_features: bool) -> None:
        super().__init__()
        self.return_features = return_features
        self.body = nn.Linear(64, 1024)
        self.head = nn.Linear(1024, 10)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = F.gelu(self.body(x))
        loss = F.cross_entropy(self.head(features), y)
        return (loss, features) if self.return_features else loss


def tiny_gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=256,
        n_positions=64,
        n_embd=64,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"  # the default loss lookup warns once and breaks the graph
    return model


class GPT2Loss(nn.Module):
    """GPT-2 returning only its loss, the whole step inside one compiled module."""

    def __init__(self) -> None:
        super().__init__()
        self.model = tiny_gpt2()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, labels=ids).loss


def make_case(name: str) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A freshly seeded model and its inputs."""
    torch.manual_seed(0)
    if name == "mlp":
        return MLP(), (torch.randn(32, 64), torch.randint(0, 10, (32,)))
    if name == "deep_mlp":  # not in CASES: only the recomputation lever's test uses it
        return DeepMLP(), (torch.randn(1024, 64), torch.randint(0, 10, (1024,)))
    if name == "convbn":
        return ConvBN(), (torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,)))
    if name == "inplace_views":
        return InplaceViews(), (torch.randn(16, 32),)
    if name == "dense_block":  # not in CASES: only the concatenation lever's test uses it
        return DenseBlock(), (torch.randn(2, 3, 32, 32),)
    if name == "graph_break":
        return GraphBreak(), (torch.randn(8, 32),)
    if name == "tied_lm":
        return TiedLM(), (torch.randint(0, 2048, (2, 16)),)
    if name == "gpt2":
        return GPT2Loss(), (torch.randint(0, 256, (2, 32)),)
    raise KeyError(name)


CASES = ("mlp", "convbn", "inplace_views", "graph_break", "tied_lm", "gpt2")


def scalar_loss(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """One scalar from all outputs, weighted by position so each output's gradient differs."""
    outs = out if isinstance(out, tuple) else (out,)
    return sum((o.float().sum() * (i + 1) for i, o in enumerate(outs)), torch.zeros(()))


def step_for(
    model: nn.Module, compiled: Callable, inputs: tuple[torch.Tensor, ...], mode: str
) -> Callable[[], None]:
    """One inference call (no grad) or one training step that starts with no gradients.

    Gradients from an earlier step are dropped first: a free of memory allocated before a
    profiled window would skew the peak measured in it.
    """
    if mode == "inference":
        model.eval()

        def infer() -> None:
            with torch.no_grad():
                compiled(*inputs)

        return infer
    model.train()

    def train() -> None:
        for p in model.parameters():
            p.grad = None
        scalar_loss(compiled(*inputs)).backward()

    return train


def assert_effect_predicted(
    base: tuple[int, int], lever: tuple[int, int], noise: float = 0.02, slack: float = 0.1
) -> None:
    """A lever's effect on the step's peak, (measured, predicted) without and with it: where
    the measured change exceeds `noise` of the base peak, the prediction moves the same way,
    and the predicted change is within `slack` of the base peak of the measured one."""
    measured_change = lever[0] - base[0]
    predicted_change = lever[1] - base[1]
    if abs(measured_change) > noise * base[0]:
        assert predicted_change * measured_change > 0, (measured_change, predicted_change)
    assert abs(predicted_change - measured_change) <= slack * base[0], (
        measured_change,
        predicted_change,
    )
