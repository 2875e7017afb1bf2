"""The model zoo of the MODeL paper, random-init, wrapped so one call is one whole step.

Training wrappers compute the loss inside `forward` and return only the loss, so the compiled
graph covers the whole step (a returned logits tensor would cost a zeros gradient of its size).
Inference wrappers return the logits. Shapes come from a `Scale`: full size (the paper's) or a
reduced one that fits CPU runs, always labelled in the results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

if TYPE_CHECKING:
    from transformers import PretrainedConfig

NUM_CLASSES = 1000
MODES = ("train", "infer")


@dataclass(frozen=True)
class Scale:
    """Input and depth of a run. None means the model's own full-size value."""

    name: str
    image_size: int | None = None
    seq_len: int | None = None
    text_layers: int | None = None


FULL = Scale("full")
REDUCED = Scale("reduced", image_size=64, seq_len=32, text_layers=2)
TINY = Scale("tiny", image_size=32, seq_len=16, text_layers=1)
# Training on CPU at sizes where activations, not the parameters' gradients, set the peak
# (issue 6's reference rows are of this order), in minutes per model on 2 cores.
TRAIN = Scale("train", image_size=128, seq_len=128, text_layers=4)
SCALES = {scale.name: scale for scale in (FULL, REDUCED, TRAIN, TINY)}

FULL_SEQ_LEN = 512


@dataclass(frozen=True)
class ModelSpec:
    """How to build one model and its inputs.

    build(scale) returns the bare model; family is "vision" or "text" and picks the wrapper and
    the inputs. native_image_size / min_image_size bound the vision input side.
    """

    name: str
    family: str
    build: Callable[[Scale], nn.Module]
    native_image_size: int = 224
    min_image_size: int = 32
    vocab_size: int = 0

    def image_size(self, scale: Scale) -> int:
        return max(scale.image_size or self.native_image_size, self.min_image_size)

    def seq_len(self, scale: Scale) -> int:
        return scale.seq_len or FULL_SEQ_LEN

    def shape_label(self, scale: Scale) -> str:
        """What was run, for the results table: input side or sequence length and depth."""
        if self.family == "vision":
            return f"{self.image_size(scale)}px"
        layers = f", {scale.text_layers} layers" if scale.text_layers else ""
        return f"seq{self.seq_len(scale)}{layers}"


class VisionTrainStep(nn.Module):
    """Cross-entropy of the classifier on a batch; returns only the loss."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.model(images), targets)


class VisionInference(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


class TextTrainStep(nn.Module):
    """Language-model loss computed by the Hugging Face head; returns only the loss."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, labels=labels).loss


class TextInference(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits


def wrap_for_mode(spec: ModelSpec, model: nn.Module, mode: str) -> nn.Module:
    """The module whose one call is one step of `mode` ("train" or "infer")."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    wrappers = {
        ("vision", "train"): VisionTrainStep,
        ("vision", "infer"): VisionInference,
        ("text", "train"): TextTrainStep,
        ("text", "infer"): TextInference,
    }
    wrapped = wrappers[(spec.family, mode)](model)
    return wrapped.train() if mode == "train" else wrapped.eval()


def make_inputs(
    spec: ModelSpec, scale: Scale, mode: str, batch: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, ...]:
    """Random inputs (and targets in training) of the right shape for `spec` at `scale`."""
    if spec.family == "vision":
        side = spec.image_size(scale)
        images = torch.randn(batch, 3, side, side, device=device)
        if mode == "infer":
            return (images,)
        return images, torch.randint(0, NUM_CLASSES, (batch,), device=device)
    token_ids = torch.randint(0, spec.vocab_size, (batch, spec.seq_len(scale)), device=device)
    return (token_ids,) if mode == "infer" else (token_ids, token_ids.clone())


# ---- vision ---------------------------------------------------------------------------------


def _torchvision(name: str, **kwargs: object) -> Callable[[Scale], nn.Module]:
    def build(scale: Scale) -> nn.Module:
        return torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES, **kwargs)

    return build


def _vit_b_16(spec_image_size: Callable[[Scale], int], scale: Scale) -> nn.Module:
    # vit_b_16's position embedding fixes the input side, so build it for the side we feed.
    return torchvision.models.VisionTransformer(
        image_size=spec_image_size(scale),
        patch_size=16,
        num_layers=12,
        num_heads=12,
        hidden_dim=768,
        mlp_dim=3072,
        num_classes=NUM_CLASSES,
    )


def _vision_specs() -> list[ModelSpec]:
    plain = [
        "alexnet", "vgg11", "vgg16", "resnet18", "resnet50", "mnasnet1_0", "mobilenet_v2",
        "squeezenet1_0", "efficientnet_b0", "densenet121",
    ]  # fmt: skip
    specs = [ModelSpec(name, "vision", _torchvision(name)) for name in plain]
    # alexnet's pooling needs at least 63px.
    specs[0] = replace(specs[0], min_image_size=64)
    specs.append(
        ModelSpec(
            "googlenet", "vision", _torchvision("googlenet", aux_logits=False, init_weights=False)
        )
    )
    specs.append(
        ModelSpec(
            "inception_v3",
            "vision",
            _torchvision("inception_v3", aux_logits=False, init_weights=False),
            native_image_size=299,
            min_image_size=128,  # batch-1 training needs more than 1x1 at its last BN
        )
    )
    vit = ModelSpec("vit_b_16", "vision", lambda scale: nn.Identity(), min_image_size=32)
    specs.append(replace(vit, build=partial(_vit_b_16, vit.image_size)))
    return specs


# ---- text -----------------------------------------------------------------------------------


def _reduce_layers(config: object, scale: Scale, attribute: str) -> None:
    if scale.text_layers:
        setattr(config, attribute, scale.text_layers)


def _bert(scale: Scale) -> nn.Module:
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig()
    _reduce_layers(config, scale, "num_hidden_layers")
    return BertForMaskedLM(config)


def _roberta_config(vocab_size: int, scale: Scale) -> PretrainedConfig:
    from transformers import RobertaConfig

    # RobertaConfig's defaults are BERT's; these are roberta-base's own values.
    config = RobertaConfig(
        vocab_size=vocab_size,
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    _reduce_layers(config, scale, "num_hidden_layers")
    return config


def _roberta(scale: Scale) -> nn.Module:
    from transformers import RobertaForMaskedLM

    return RobertaForMaskedLM(_roberta_config(50265, scale))


def _xlm_roberta(scale: Scale) -> nn.Module:
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    config = XLMRobertaConfig(**_roberta_config(250002, scale).to_dict())
    return XLMRobertaForMaskedLM(config)


def _gpt2(scale: Scale) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config()  # the defaults are the 124M model
    _reduce_layers(config, scale, "n_layer")
    model = GPT2LMHeadModel(config)
    # The default loss lookup breaks the graph under dynamo; naming it keeps one graph.
    model.loss_type = "ForCausalLM"
    return model


def _opt(scale: Scale) -> nn.Module:
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig()  # the defaults are opt-125m
    _reduce_layers(config, scale, "num_hidden_layers")
    return OPTForCausalLM(config)


def _text_specs() -> list[ModelSpec]:
    return [
        ModelSpec("bert-base", "text", _bert, vocab_size=30522),
        ModelSpec("roberta-base", "text", _roberta, vocab_size=50265),
        ModelSpec("xlm-roberta-base", "text", _xlm_roberta, vocab_size=250002),
        ModelSpec("gpt2", "text", _gpt2, vocab_size=50257),
        ModelSpec("opt-125m", "text", _opt, vocab_size=50272),
    ]


ZOO: dict[str, ModelSpec] = {spec.name: spec for spec in _vision_specs() + _text_specs()}
QUICK_MODELS = ("squeezenet1_0", "alexnet", "gpt2")


def select_models(names: str | None) -> list[ModelSpec]:
    """The specs named in a comma list (all of the zoo for None or "all")."""
    if not names or names == "all":
        return list(ZOO.values())
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in ZOO]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; known: {', '.join(ZOO)}")
    return [ZOO[name] for name in wanted]
