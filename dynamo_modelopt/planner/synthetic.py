"""Synthetic planning instances (deterministic for a seed) for tests and the benchmark.

They imitate the shapes met in real graphs: a chain, fork/join diamonds, a U-Net with skip
connections, and a forward+backward training step that saves activations. All are labelled
`meta["synthetic"] = True`.
"""

from __future__ import annotations

import random

from .problem import Operation, Problem, Tensor

KIB = 1024


class _Builder:
    def __init__(self, name: str, seed: int, alignment: int = 64) -> None:
        self.rng = random.Random(seed)
        self.ops: list[str] = []
        self.tensors: dict[str, dict[str, object]] = {}
        self.name = name
        self.alignment = alignment

    def input(self, name: str, size: int, placed: bool = False, **kw: object) -> str:
        self.tensors[name] = {
            "size": size,
            "producer": None,
            "consumers": [],
            "placed": placed,
            **kw,
        }
        return name

    def op(self, name: str, inputs: list[str], out_sizes: list[int], **kw: object) -> list[str]:
        self.ops.append(name)
        for t in inputs:
            cons = self.tensors[t]["consumers"]
            assert isinstance(cons, list)
            if name not in cons:
                cons.append(name)
        outs = []
        for k, size in enumerate(out_sizes):
            t = f"{name}.out{k}" if len(out_sizes) > 1 else f"{name}.out"
            self.tensors[t] = {"size": size, "producer": name, "consumers": [], **kw}
            outs.append(t)
        return outs

    def mark(self, tensor: str, **kw: object) -> None:
        self.tensors[tensor].update(kw)

    def build(self, **meta: object) -> Problem:
        tensors = []
        for name, d in self.tensors.items():
            tensors.append(
                Tensor(
                    name=name,
                    size=int(d["size"]),  # type: ignore[call-overload]
                    producer=d["producer"],  # type: ignore[arg-type]
                    consumers=tuple(d["consumers"]),  # type: ignore[arg-type]
                    alignment=self.alignment,
                    live_to_end=bool(d.get("live_to_end", False)),
                    resident=bool(d.get("resident", False)),
                    placed=bool(d.get("placed", True)),
                )
            )
        return Problem(
            operations=[Operation(o) for o in self.ops],
            tensors=tensors,
            name=self.name,
            meta={"synthetic": True, **meta},
        )

    def size(self, lo: int, hi: int, unit: int = 512) -> int:
        return self.rng.randint(lo, hi) * unit


def chain(n: int = 200, seed: int = 0) -> Problem:
    """A straight chain with a side workspace per op: only one order exists."""
    b = _Builder(f"synthetic_chain_{n}", seed)
    x = b.input("x", b.size(8, 64))
    for i in range(n):
        (x,) = b.op(f"op{i}", [x], [b.size(8, 64)])
    b.mark(x, live_to_end=True)
    return b.build(kind="chain")


def diamonds(n_diamonds: int = 30, width: int = 4, seed: int = 0) -> Problem:
    """Fork/join diamonds: each fork feeds `width` branches of 1-3 ops with big
    intermediates, joined by one op. Program order runs the branches breadth first."""
    b = _Builder(f"synthetic_diamonds_{n_diamonds}x{width}", seed)
    x = b.input("x", b.size(16, 32))
    for d in range(n_diamonds):
        (f,) = b.op(f"d{d}.fork", [x], [b.size(16, 32)])
        lengths = [b.rng.randint(1, 3) for _ in range(width)]
        heads = [f] * width
        for step in range(max(lengths)):  # breadth first program order
            for k in range(width):
                if step < lengths[k]:
                    (heads[k],) = b.op(f"d{d}.b{k}.{step}", [heads[k]], [b.size(8, 128)])
        (x,) = b.op(f"d{d}.join", heads, [b.size(16, 32)])
    b.mark(x, live_to_end=True)
    return b.build(kind="diamonds")


def unet(levels: int = 4, convs: int = 6, seed: int = 0) -> Problem:
    """An encoder/decoder with skip connections; sizes shrink 4x per level down."""
    b = _Builder(f"synthetic_unet_{levels}x{convs}", seed)
    base = 2048
    x = b.input("image", base * 512)
    skips = []
    for lev in range(levels):
        size = base * 512 // (4**lev)
        for c in range(convs):
            w = b.input(f"enc{lev}.w{c}", b.size(1, 8))
            (x,) = b.op(
                f"enc{lev}.conv{c}",
                [x, w],
                [size],
            )
            # a side branch per conv (a norm statistic), joined later in the level
            if c % 2 == 1:
                (s,) = b.op(f"enc{lev}.stat{c}", [x], [size // 16])
                (x,) = b.op(f"enc{lev}.norm{c}", [x, s], [size])
        skips.append(x)
        (x,) = b.op(f"down{lev}", [x], [size // 4])
    for c in range(convs):
        (x,) = b.op(f"mid.conv{c}", [x], [base * 512 // (4**levels)])
    for lev in reversed(range(levels)):
        size = base * 512 // (4**lev)
        (x,) = b.op(f"up{lev}", [x], [size])
        (x,) = b.op(f"cat{lev}", [x, skips[lev]], [2 * size])
        for c in range(convs):
            (x,) = b.op(f"dec{lev}.conv{c}", [x], [size])
    b.mark(x, live_to_end=True)
    return b.build(kind="unet")


def fwbw(layers: int = 40, seed: int = 0) -> Problem:
    """A training step: per layer a block of ~12 forward ops saving activations, then the
    backward in reverse using them; weight gradients live to the end."""
    b = _Builder(f"synthetic_fwbw_{layers}", seed)
    act = 64 * 512
    x = b.input("x", act)
    saved: list[list[str]] = []
    weights = []
    for lay in range(layers):
        w = b.input(f"l{lay}.w", b.size(64, 256))
        weights.append(w)
        (h,) = b.op(f"l{lay}.ln", [x], [act])
        (q,) = b.op(f"l{lay}.q", [h, w], [act])
        (k,) = b.op(f"l{lay}.k", [h, w], [act])
        (v,) = b.op(f"l{lay}.v", [h, w], [act])
        (s,) = b.op(f"l{lay}.scores", [q, k], [4 * act])
        (p,) = b.op(f"l{lay}.softmax", [s], [4 * act])
        (a,) = b.op(f"l{lay}.attn", [p, v], [act])
        (o,) = b.op(f"l{lay}.proj", [a, w], [act])
        (r,) = b.op(f"l{lay}.res", [x, o], [act])
        (m,) = b.op(f"l{lay}.mlp_up", [r, w], [4 * act])
        (g,) = b.op(f"l{lay}.gelu", [m], [4 * act])
        (x,) = b.op(f"l{lay}.mlp_down", [g, r, w], [act])
        saved.append([h, q, k, v, p, a, r, m])
    (loss,) = b.op("loss", [x], [512])
    b.mark(loss, live_to_end=True)
    (grad,) = b.op("loss.bw", [loss, x], [act])
    for lay in reversed(range(layers)):
        h, q, k, v, p, a, r, m = saved[lay]
        w = weights[lay]
        (gm,) = b.op(f"l{lay}.bw.mlp_down", [grad, m, w], [4 * act])
        (gr,) = b.op(f"l{lay}.bw.mlp_up", [gm, r, w], [act])
        (gw1,) = b.op(f"l{lay}.bw.w_mlp", [gm, r], [b.tensors[w]["size"]])  # type: ignore[list-item]
        b.mark(gw1, live_to_end=True)
        (ga,) = b.op(f"l{lay}.bw.proj", [gr, a, w], [act])
        (gp,) = b.op(f"l{lay}.bw.attn_p", [ga, v], [4 * act])
        (gv,) = b.op(f"l{lay}.bw.attn_v", [ga, p], [act])
        (gs,) = b.op(f"l{lay}.bw.softmax", [gp, p], [4 * act])
        (gq,) = b.op(f"l{lay}.bw.q", [gs, k], [act])
        (gk,) = b.op(f"l{lay}.bw.k", [gs, q], [act])
        (gh,) = b.op(f"l{lay}.bw.qkv", [gq, gk, gv, w], [act])
        (gw2,) = b.op(f"l{lay}.bw.w_qkv", [gq, gk, gv, h], [b.tensors[w]["size"]])  # type: ignore[list-item]
        b.mark(gw2, live_to_end=True)
        (grad,) = b.op(f"l{lay}.bw.ln", [gh, gr], [act])
    b.mark(grad, live_to_end=True)
    return b.build(kind="fwbw")


def random_dag(
    n: int,
    seed: int,
    max_fanout: int = 3,
    window: int = 6,
    alignment: int = 1,
    sizes: tuple[int, ...] = (1, 2, 3, 4, 6, 8),
) -> Problem:
    """A random DAG in program order: each op makes one tensor used by up to `max_fanout`
    of the next `window` ops; some inputs, workspaces, aliases and outputs sprinkled in."""
    rng = random.Random(seed)
    ops = [f"o{i}" for i in range(n)]
    tensors: list[Tensor] = []
    inp = Tensor("in", rng.choice(sizes), None, (ops[0],), alignment=alignment, placed=False)
    tensors.append(inp)
    for i in range(n):
        later = list(range(i + 1, min(n, i + 1 + window)))
        k = min(len(later), rng.randint(1, max_fanout))
        cons = tuple(ops[c] for c in sorted(rng.sample(later, k)))
        lte = i == n - 1 or rng.random() < 0.08
        tensors.append(
            Tensor(f"t{i}", rng.choice(sizes), ops[i], cons, alignment=alignment, live_to_end=lte)
        )
        if rng.random() < 0.15:  # a workspace
            tensors.append(Tensor(f"w{i}", rng.choice(sizes), ops[i], (), alignment=alignment))
        if cons and rng.random() < 0.1:  # a view used by one later op
            tensors.append(
                Tensor(f"v{i}", 0, ops[i], (cons[-1],), alignment=alignment, alias_of=f"t{i}")
            )
    return Problem(
        operations=[Operation(o) for o in ops],
        tensors=tensors,
        name=f"random_{n}_{seed}",
        meta={"synthetic": True, "kind": "random"},
    )
