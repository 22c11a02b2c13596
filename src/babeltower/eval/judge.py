"""Attribute judge: a small CNN that reads colour, shape, count, position and size off a scene image.

GenEval (Ghosh et al. 2023) and its multilingual variant m-GenEval score a
text-to-image model by asking a detector whether the generated image shows what the
prompt asked for. Our scenes are synthetic, so the "detector" is a classifier trained
on freshly rendered scenes: one classification head per scene attribute
(``ATTRIBUTES``: colour 6, shape 6, count 3, position 5, size 2).

The judge is a measuring instrument, so it is trained on every colour–shape
combination (both scene splits) and its own accuracy on real renders of the
evaluation scenes is reported beside every score it gives generated images: a
generated-image accuracy can only be read against that ceiling.

Input: RGB images of ``JudgeConfig.image_size`` pixels (default 32, the size of the
generated images). Images of another size are resized with PIL's bilinear filter, which
antialiases (widens its support) when downsampling; the training renders need no resize.

Example:
    >>> judge = train_judge(image_size=32)            # about a minute on 2 CPU cores
    >>> judge.predict([render_scene(spec, 32)])
    [{'colour': 'red', 'shape': 'circle', 'count': '2', 'position': 'top', 'size': 'large'}]
    >>> judge.save_pretrained("runs/judge"); AttributeJudge.from_pretrained("runs/judge")
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from babeltower.datasets.synthetic.scenes import (
    ATTRIBUTES,
    COLOURS,
    COUNTS,
    POSITIONS,
    SHAPES,
    SIZES,
    SceneSpec,
    render_scene,
)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

#: How images of another size than ``JudgeConfig.image_size`` are resized (pinned).
RESIZE_METHOD = "PIL bilinear (antialiased when downsampling)"


def _default_attributes() -> dict[str, list[str]]:
    return {name: list(values) for name, values in ATTRIBUTES.items()}


@dataclass
class JudgeConfig:
    """Architecture of the attribute judge (saved as config.json)."""

    image_size: int = 32
    """Input height and width in pixels; other sizes are resized (see ``RESIZE_METHOD``)."""
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    """Output channels of the conv stages; each stage is conv3x3-BN-ReLU then 2x2 max-pool."""
    grid_size: int = 4
    """The last feature map is average-pooled to grid_size x grid_size, so the heads still
    see where things are (position, count) at any input size."""
    hidden_size: int = 128
    """Width of the shared fully connected layer before the heads."""
    attributes: dict[str, list[str]] = field(default_factory=_default_attributes)
    """Attribute -> class labels, one head each (``ATTRIBUTES``; counts as strings)."""

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise ValueError(f"JudgeConfig.image_size must be an integer >= 8, got {self.image_size!r}")
        if not self.channels or not all(isinstance(c, int) and c > 0 for c in self.channels):
            raise ValueError(f"JudgeConfig.channels must be a non-empty list of positive integers, got {self.channels!r}")
        self.channels = list(self.channels)
        if not isinstance(self.grid_size, int) or self.grid_size < 1:
            raise ValueError(f"JudgeConfig.grid_size must be a positive integer, got {self.grid_size!r}")
        if not isinstance(self.hidden_size, int) or self.hidden_size < 1:
            raise ValueError(f"JudgeConfig.hidden_size must be a positive integer, got {self.hidden_size!r}")
        if not isinstance(self.attributes, dict) or not self.attributes:
            raise ValueError(f"JudgeConfig.attributes must map attribute names to label lists, got {self.attributes!r}")
        for name, labels in self.attributes.items():
            if not isinstance(labels, (list, tuple)) or len(labels) < 2 or len(set(map(str, labels))) != len(labels):
                raise ValueError(
                    f"JudgeConfig.attributes[{name!r}] must list at least 2 distinct labels, got {labels!r}"
                )
        self.attributes = {str(k): [str(v) for v in labels] for k, labels in self.attributes.items()}


class AttributeJudge(nn.Module):
    """Images (B, 3, S, S) in [0, 1] -> logits per attribute {name: (B, num_labels)}."""

    def __init__(self, config: JudgeConfig):
        super().__init__()
        self.config = config
        stages, in_channels = [], 3
        for out_channels in config.channels:
            stages += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(config.grid_size)
        self.fc = nn.Linear(in_channels * config.grid_size**2, config.hidden_size)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(config.hidden_size, len(labels)) for name, labels in config.attributes.items()}
        )

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (pixel_values - 0.5) / 0.25  # (B, 3, S, S); fixed normalisation, no dataset statistics to ship
        x = self.pool(self.features(x)).flatten(1)  # (B, C * g * g)
        x = F.relu(self.fc(x))  # (B, hidden)
        return {name: head(x) for name, head in self.heads.items()}  # name -> (B, num_labels)

    # ------------------------------------------------------------------ images
    def preprocess(self, images: Iterable[Image.Image]) -> torch.Tensor:
        """PIL images -> (B, 3, S, S) float in [0, 1], resized with ``RESIZE_METHOD`` if needed."""
        size = self.config.image_size
        arrays = []
        for image in images:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
            arrays.append(np.asarray(image, dtype=np.uint8))
        if not arrays:
            return torch.zeros(0, 3, size, size)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, S, S)

    @torch.no_grad()
    def predict(self, images: list[Image.Image], batch_size: int = 256) -> list[dict[str, str]]:
        """Judges images.

        Args:
            images: PIL images of any size and mode (converted to RGB, resized to
                ``config.image_size`` with ``RESIZE_METHOD``).
            batch_size: Images per forward pass.

        Returns:
            One dict per image, attribute -> predicted label (labels as in
            ``config.attributes``; counts are the strings ``"1"``-``"3"``).
        """
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out: list[dict[str, str]] = []
        for start in range(0, len(images), batch_size):
            logits = self(self.preprocess(images[start : start + batch_size]).to(device))
            indices = {name: value.argmax(-1).tolist() for name, value in logits.items()}
            for row in range(len(next(iter(indices.values())))):
                out.append({name: self.config.attributes[name][indices[name][row]] for name in indices})
        self.train(was_training)
        return out

    # ---------------------------------------------------------------- save / load
    def save_pretrained(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Writes ``folder/config.json`` and ``folder/model.safetensors``.

        Raises:
            FileExistsError: If ``folder`` is non-empty and ``overwrite`` is False.
        """
        from safetensors.torch import save_file

        from babeltower.models.hub import prepare_output_folder

        folder = prepare_output_folder(folder, overwrite)
        config = {"_class_name": type(self).__name__, **asdict(self.config)}
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2))
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, folder / WEIGHTS_NAME)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, map_location: str = "cpu") -> "AttributeJudge":
        """Loads a judge written by :meth:`save_pretrained`, strictly.

        Raises:
            FileNotFoundError: If the folder, its config.json or model.safetensors is missing.
            ValueError: If config.json has unknown or invalid fields.
            RuntimeError: If model.safetensors has missing, unexpected or mis-shaped weights.
        """
        from safetensors.torch import load_file

        from babeltower.models.hub import strict_load

        folder = Path(folder)
        config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: an attribute-judge folder holds {CONFIG_NAME} and {WEIGHTS_NAME} "
                    "(written by AttributeJudge.save_pretrained / train_judge)"
                )
        raw = json.loads(config_path.read_text())
        class_name = raw.pop("_class_name", None)
        if class_name != cls.__name__:
            raise ValueError(f"{config_path}: _class_name is {class_name!r}; expected {cls.__name__!r}")
        known = {f.name for f in fields(JudgeConfig)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{config_path}: unknown JudgeConfig fields {unknown}; valid fields are {sorted(known)}")
        try:
            config = JudgeConfig(**raw)
        except ValueError as exc:
            raise ValueError(f"{config_path}: {exc}") from exc
        judge = cls(config)
        strict_load(judge, load_file(weights_path, device=map_location), str(weights_path))
        return judge.eval()


def num_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# -------------------------------------------------------------------------- training


def judge_training_scenes(num: int, seed: int = 0) -> list[SceneSpec]:
    """Scenes for training the judge: every attribute uniform, all colour–shape pairs.

    Both scene splits are covered on purpose (the judge measures, it is not the model
    under test), with uniform colour–shape pairs rather than the split proportions.
    Render seeds come from a random stream of their own (``"judge-scenes:<seed>"``),
    not from :func:`sample_scenes`' streams, so a judge scene coincides with an
    evaluation scene only if two independent 31-bit seeds collide.
    """
    rng = random.Random(f"judge-scenes:{seed}")
    return [
        SceneSpec(
            shape=rng.choice(SHAPES),
            colour=rng.choice(COLOURS),
            count=rng.choice(COUNTS),
            position=rng.choice(POSITIONS),
            size=rng.choice(SIZES),
            seed=rng.getrandbits(31),
        )
        for _ in range(num)
    ]


def _labels(judge: AttributeJudge, specs: list[SceneSpec]) -> dict[str, torch.Tensor]:
    """attribute -> (N,) class indices of the specs."""
    out = {}
    for name, labels in judge.config.attributes.items():
        try:
            out[name] = torch.tensor([labels.index(str(s.attributes()[name])) for s in specs])
        except (KeyError, ValueError) as exc:
            raise ValueError(
                f"the judge's attribute {name!r} (labels {labels}) does not fit the scene specs: {exc}"
            ) from exc
    return out


def _augment(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Makes the judge less brittle on generated images: random blur and pixel noise.

    No flips, crops or colour jitter: they would change position or colour labels.
    """
    b = pixels.shape[0]
    blur = F.avg_pool2d(F.pad(pixels, (1, 1, 1, 1), mode="replicate"), 3, stride=1)  # (B, 3, S, S)
    amount = torch.rand(b, 1, 1, 1, generator=generator) * (torch.rand(b, 1, 1, 1, generator=generator) < 0.5)
    pixels = pixels + amount * (blur - pixels)
    sigma = 0.04 * torch.rand(b, 1, 1, 1, generator=generator)
    return (pixels + sigma * torch.randn(pixels.shape, generator=generator)).clamp_(0, 1)


def train_judge(
    image_size: int = 32,
    num_train: int = 20000,
    steps: int = 1000,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    config: Optional[JudgeConfig] = None,
    progress: bool = True,
) -> AttributeJudge:
    """Trains an attribute judge on freshly rendered scenes, on the CPU.

    Args:
        image_size: Render size; must match the generated images to be judged (the
            judge resizes others, which it was not trained on).
        num_train: Distinct training scenes (from :func:`judge_training_scenes`), rendered
            once; the steps cycle through them in seeded shuffled epochs.
        steps: Optimiser steps (AdamW, one-cycle learning rate).
        batch_size: Images per step.
        lr: Peak learning rate.
        seed: Scenes, initialisation, shuffling and augmentation.
        config: Architecture; default ``JudgeConfig(image_size=image_size)``.
        progress: Show a tqdm progress bar.

    Returns:
        The trained judge in eval mode; ``judge.training_info`` records the settings,
        the wall time and the final training loss.

    Raises:
        ValueError: If a count is not positive or ``config.image_size`` differs from ``image_size``.
    """
    from tqdm.auto import tqdm

    if num_train < 1 or steps < 1 or batch_size < 1:
        raise ValueError(
            f"train_judge: num_train, steps and batch_size must be >= 1, got {num_train}, {steps}, {batch_size}"
        )
    config = config or JudgeConfig(image_size=image_size)
    if config.image_size != image_size:
        raise ValueError(f"train_judge: config.image_size={config.image_size} differs from image_size={image_size}")
    start_time, start_cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(seed)
    judge = AttributeJudge(config)
    specs = judge_training_scenes(num_train, seed)
    pixels = judge.preprocess(render_scene(s, image_size) for s in specs)  # (N, 3, S, S)
    labels = _labels(judge, specs)
    optimizer = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.15)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_train, generator=generator)
    cursor, loss_value = 0, math.nan
    judge.train()
    bar = tqdm(range(steps), desc="training attribute judge", unit="step", disable=not progress)
    for _ in bar:
        if cursor + batch_size > num_train:
            order, cursor = torch.randperm(num_train, generator=generator), 0
        index = order[cursor : cursor + batch_size]
        cursor += batch_size
        logits = judge(_augment(pixels[index], generator))
        loss = sum(F.cross_entropy(logits[name], labels[name][index]) for name in logits)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        loss_value = loss.item()
        bar.set_postfix(loss=f"{loss_value:.3f}")
    judge.eval()
    judge.training_info = {
        "image_size": image_size,
        "num_train": num_train,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "final_loss": loss_value,
        "seconds": time.perf_counter() - start_time,
        "cpu_seconds": time.process_time() - start_cpu,
        "num_parameters": num_parameters(judge),
    }
    return judge


# ------------------------------------------------------------------------ accuracy


def attribute_accuracy(predictions: list[dict], specs: list[SceneSpec]) -> dict[str, float]:
    """Per-attribute accuracy of judged attributes against the scene specs.

    Args:
        predictions: One attribute -> label dict per image (as from :meth:`AttributeJudge.predict`).
        specs: The scene each image should show, aligned with ``predictions``.

    Returns:
        attribute -> accuracy for every attribute in the predictions, plus ``"all"``:
        the fraction of images with every attribute right (GenEval's per-image score).

    Raises:
        ValueError: If the lists differ in length or are empty.
    """
    if len(predictions) != len(specs):
        raise ValueError(f"attribute_accuracy: {len(predictions)} predictions for {len(specs)} scenes")
    if not specs:
        raise ValueError("attribute_accuracy: no images to score")
    names = list(predictions[0])
    correct = {name: [str(p[name]) == str(s.attributes()[name]) for p, s in zip(predictions, specs)] for name in names}
    out = {name: sum(hits) / len(hits) for name, hits in correct.items()}
    out["all"] = sum(all(hits) for hits in zip(*correct.values())) / len(specs)
    return out


def judge_accuracy(judge: AttributeJudge, specs: list[SceneSpec], image_size: Optional[int] = None) -> dict[str, float]:
    """The judge's own accuracy on real renders of ``specs`` (its ceiling for generated images).

    Args:
        judge: The judge.
        specs: Scenes to render and judge.
        image_size: Render size; default the judge's ``config.image_size``. Pass the
            generated images' size so real and generated images go through the same resize.

    Returns:
        As :func:`attribute_accuracy`, plus ``num_images``.
    """
    size = image_size or judge.config.image_size
    result = attribute_accuracy(judge.predict([render_scene(s, size) for s in specs]), specs)
    result["num_images"] = len(specs)
    return result
