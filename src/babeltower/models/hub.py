"""Hub checkpoints: save/load babeltower models as Hugging Face hub folders.

Layout of an exported contrastive model (diffusers' ``model_index.json`` convention,
one subfolder per component)::

    OUT/
      model_index.json        component -> (library, class); suite metadata
      config.json             CLIPConfig (embed_dim, temperature bounds, both towers)
      model.safetensors       the weights that belong to no tower (logit_scale)
      vision_model/           config.json + model.safetensors (open_clip VisionTransformer keys)
      text_encoder/           transformers AutoModel folder + projection + tokenizer
      tokenizer/              the tokenizer alone (AutoTokenizer.from_pretrained)
      README.md               model card with the evaluation table

Loading is strict: a missing or unexpected weight, or a missing file, is an error.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

from babeltower import __version__

MODEL_INDEX = "model_index.json"


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: a babeltower hub folder needs {what}")
    return path


#: Top-level entries of a hub folder besides its components (the subfolders model_index.json names).
#: A single-component folder (a text encoder, a judge) has its files at the top level.
HUB_FILES = {
    MODEL_INDEX, "config.json", "model.safetensors", "README.md", "tokenizer", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
    "babeltower_text_encoder.json", "text_projection.safetensors",
}


def _hub_entries(folder: Path) -> set[str]:
    """The names an export may have written into ``folder``: the usual files plus the
    component subfolders its ``model_index.json`` names."""
    index_file = folder / MODEL_INDEX
    try:
        index = json.loads(index_file.read_text()) if index_file.is_file() else {}
    except (OSError, ValueError):
        index = {}
    components = {k for k, v in index.items() if not k.startswith("_") and isinstance(v, list)}
    entry = index.get("_class_name")
    if isinstance(entry, list) and entry and isinstance(entry[0], str):  # a custom diffusers pipeline's module
        components.add(f"{entry[0]}.py")
    return HUB_FILES | components


def prepare_output_folder(folder: str | Path, overwrite: bool) -> Path:
    """Creates ``folder`` for an export; replaces an earlier export only with ``overwrite``.

    ``overwrite`` replaces what an earlier export wrote (the files and the component
    subfolders its ``model_index.json`` names) and nothing else: a folder holding any
    other file (a run folder with checkpoints, the user's notes) is refused whole, even
    with ``overwrite``, so an export can never delete what it did not write.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file; an export writes a folder: choose another output path")
    if folder.exists() and any(folder.iterdir()):
        present = {p.name for p in folder.iterdir()}
        foreign = sorted(present - _hub_entries(folder))
        if foreign:
            raise FileExistsError(
                f"{folder} is not empty and holds files an export does not write ({', '.join(foreign[:5])}"
                f"{' ...' if len(foreign) > 5 else ''}); nothing was changed: choose an empty or new output folder"
            )
        if not overwrite:
            raise FileExistsError(f"{folder} holds an earlier export; pass --overwrite (overwrite=True) to replace it")
        for name in present:
            path = folder / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def strict_load(module: torch.nn.Module, state: dict, where: str, exclude: Optional[str] = None) -> None:
    """``load_state_dict(strict=True)`` with an error that names the file and the keys.

    ``exclude``: a key prefix (e.g. ``"text."``) of a submodule saved and loaded elsewhere;
    the file must then hold exactly the other keys.
    """
    own = {k: v for k, v in module.state_dict().items() if not (exclude and k.startswith(exclude))}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        raise RuntimeError(
            f"{where} does not match the model: missing keys {missing[:10]}, unexpected keys {unexpected[:10]}, "
            f"shape mismatches {[(k, tuple(state[k].shape), tuple(own[k].shape)) for k in mismatched[:10]]}"
        )
    module.load_state_dict(state, strict=not exclude)


def model_card(
    title: str,
    languages: list[str],
    eval_markdown: Optional[str],
    extra: str = "",
    usage: str = "Load with `babeltower.models.hub.load_clip(path)`; ",
    tag: str = "clip",
    subfolder_note: str = "the `text_encoder/` subfolder loads with `transformers.AutoModel.from_pretrained`.",
) -> str:
    """A hub model card (YAML front matter + description + evaluation table)."""
    front = ["---", "library_name: babeltower", "tags:", "- babeltower", "- multilingual", f"- {tag}"]
    if languages:
        front += ["language:"] + [f"- {lang}" for lang in languages]
    front.append("---")
    body = [
        f"# {title}",
        "",
        f"Exported by babeltower {__version__}. {usage}{subfolder_note}",
        "",
        extra,
        "## Evaluation",
        "",
        eval_markdown or "_No evaluation report was attached at export time._",
        "",
    ]
    return "\n".join(front + body)


def save_clip(
    model,
    folder: str | Path,
    tokenizer=None,
    eval_report: Optional[dict] = None,
    overwrite: bool = False,
) -> Path:
    """Writes a :class:`~babeltower.models.clip.CLIPModel` as a hub folder.

    Args:
        model: the CLIPModel.
        folder: output folder (must be empty or absent unless ``overwrite``).
        tokenizer: tokenizer saved with the text encoder; default: the one named in the config.
        eval_report: dict from an evaluator (its ``markdown`` goes into the model card).
        overwrite: replace a non-empty folder.
    """
    folder = prepare_output_folder(folder, overwrite)
    config = model.config
    model.text.save_pretrained(folder / "text_encoder", tokenizer=tokenizer)
    from babeltower.modalities.text import load_tokenizer

    load_tokenizer(folder / "text_encoder").save_pretrained(folder / "tokenizer")
    (folder / "vision_model").mkdir()
    (folder / "vision_model" / "config.json").write_text(json.dumps(asdict(config.vision), indent=2))
    save_file(
        # open_clip's own VisionTransformer keys (no wrapper prefix), so open_clip loads the file too
        {k: v.detach().cpu().contiguous() for k, v in model.vision.vit.state_dict().items()},
        folder / "vision_model" / "model.safetensors",
    )
    save_file({"logit_scale": model.logit_scale.detach().cpu().reshape(1)}, folder / "model.safetensors")
    text_dict = asdict(config.text)
    text_dict["pretrained"] = None
    text_dict["tokenizer"] = None
    (folder / "config.json").write_text(
        json.dumps(
            {
                "embed_dim": config.embed_dim,
                "init_logit_scale": config.init_logit_scale,
                "max_logit_scale": config.max_logit_scale,
                "vision": asdict(config.vision),
                "text": text_dict,
            },
            indent=2,
        )
    )
    backbone_class = type(model.text.backbone).__name__
    (folder / MODEL_INDEX).write_text(
        json.dumps(
            {
                "_class_name": "CLIPModel",
                "_babeltower_version": __version__,
                "task": "contrastive",
                "vision_model": ["babeltower", "VisionTower"],
                "text_encoder": ["transformers", backbone_class],
                "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
            },
            indent=2,
        )
    )
    languages = sorted((eval_report or {}).get("languages", []))
    (folder / "README.md").write_text(
        model_card("babeltower multilingual CLIP", languages, (eval_report or {}).get("markdown"))
    )
    return folder


def load_clip(folder: str | Path, map_location: str = "cpu"):
    """Loads a CLIPModel written by :func:`save_clip`, strictly. Returns (model, tokenizer)."""
    from babeltower.modalities.text import load_tokenizer
    from babeltower.models.clip import CLIPConfig, CLIPModel
    from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig
    from babeltower.models.vision import VisionConfig

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; expected a babeltower hub folder (babeltower export ...)")
    index = json.loads(_require(folder / MODEL_INDEX, "model_index.json").read_text())
    if index.get("_class_name") != "CLIPModel":
        raise ValueError(f"{folder / MODEL_INDEX} describes a {index.get('_class_name')!r}, not a CLIPModel")
    raw = json.loads(_require(folder / "config.json", "config.json").read_text())
    text_encoder = TextEncoder.from_pretrained(_require(folder / "text_encoder", "the text_encoder/ subfolder"))
    config = CLIPConfig(
        vision=VisionConfig(**raw["vision"]),
        text=text_encoder.config,  # the architecture as saved (it may come from a pretrained checkpoint)
        embed_dim=raw["embed_dim"],
        init_logit_scale=raw["init_logit_scale"],
        max_logit_scale=raw["max_logit_scale"],
    )
    model = CLIPModel(config)
    model.text = text_encoder  # replaces the random init with the strictly loaded encoder
    vision_file = _require(folder / "vision_model" / "model.safetensors", "vision_model/model.safetensors")
    strict_load(model.vision.vit, load_file(vision_file, device=map_location), str(vision_file))
    top = load_file(_require(folder / "model.safetensors", "model.safetensors (logit_scale)"))
    if set(top) != {"logit_scale"}:
        raise RuntimeError(f"{folder / 'model.safetensors'} must hold exactly 'logit_scale', found {sorted(top)}")
    model.logit_scale.data.copy_(top["logit_scale"].reshape(()))
    return model.eval(), load_tokenizer(folder / "text_encoder")


def load_vision_tower(folder: str | Path, map_location: str = "cpu"):
    """The vision tower of a contrastive hub folder alone (strict), e.g. as a frozen feature
    extractor for another head (the text-to-image head's representation alignment)."""
    from babeltower.models.vision import VisionConfig, VisionTower

    folder = Path(folder)
    config = json.loads(_require(folder / "vision_model" / "config.json", "vision_model/config.json").read_text())
    tower = VisionTower(VisionConfig(**config))
    weights = _require(folder / "vision_model" / "model.safetensors", "vision_model/model.safetensors")
    strict_load(tower.vit, load_file(weights, device=map_location), str(weights))
    return tower


def save_text_encoder(
    text_encoder,
    folder: str | Path,
    tokenizer=None,
    eval_report: Optional[dict] = None,
    overwrite: bool = False,
    extra_index: Optional[dict] = None,
) -> Path:
    """Writes a text encoder alone as a hub folder (e.g. a distilled multilingual student).

    Layout: ``model_index.json``, ``text_encoder/`` (AutoModel-loadable backbone,
    projection, tokenizer), ``tokenizer/`` and a model card. Heads start from it with
    ``init_from: FOLDER``.
    """
    from babeltower.modalities.text import load_tokenizer

    folder = prepare_output_folder(folder, overwrite)
    text_encoder.save_pretrained(folder / "text_encoder", tokenizer=tokenizer)
    load_tokenizer(folder / "text_encoder").save_pretrained(folder / "tokenizer")
    index = {
        "_class_name": "TextEncoder",
        "_babeltower_version": __version__,
        "text_encoder": ["transformers", type(text_encoder.backbone).__name__],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        **(extra_index or {}),
    }
    (folder / MODEL_INDEX).write_text(json.dumps(index, indent=2))
    languages = sorted((eval_report or {}).get("languages", []))
    (folder / "README.md").write_text(
        model_card(
            "babeltower multilingual text encoder",
            languages,
            (eval_report or {}).get("markdown"),
            usage="Load with `babeltower.models.text_encoder.TextEncoder.from_pretrained(path + '/text_encoder')`; "
            "start a head from it with `init_from: PATH`; ",
            tag="sentence-embeddings",
        )
    )
    return folder


def load_text_encoder(folder: str | Path):
    """(TextEncoder, tokenizer, model_index) from a folder written by :func:`save_text_encoder`."""
    from babeltower.modalities.text import load_tokenizer
    from babeltower.models.text_encoder import TextEncoder

    folder = Path(folder)
    index = json.loads(_require(folder / MODEL_INDEX, "model_index.json").read_text())
    if index.get("_class_name") != "TextEncoder":
        raise ValueError(f"{folder / MODEL_INDEX} describes a {index.get('_class_name')!r}, not a TextEncoder")
    encoder = TextEncoder.from_pretrained(_require(folder / "text_encoder", "the text_encoder/ subfolder"))
    return encoder, load_tokenizer(folder / "text_encoder"), index


def load_text_encoder_weights(text_encoder, path: str | Path) -> None:
    """Initialises ``text_encoder`` in place from a hub folder or a text-encoder folder.

    The backbone must match exactly (strict). The projection is copied when its shape
    matches; otherwise (e.g. a distilled student projecting to a teacher's width) the
    fresh projection is kept, since the head's embedding width differs by design.
    """
    from babeltower.models.text_encoder import TextEncoder

    path = Path(path)
    if (path / "text_encoder").is_dir():
        path = path / "text_encoder"
    source = TextEncoder.from_pretrained(path)
    strict_load(text_encoder.backbone, source.backbone.state_dict(), str(path))
    own_proj = text_encoder.text_projection
    src_proj = source.text_projection
    if own_proj is not None and src_proj is not None:
        if all(a.shape == b.shape for a, b in zip(own_proj.state_dict().values(), src_proj.state_dict().values())):
            own_proj.load_state_dict(src_proj.state_dict())


def push_to_hub(folder: str | Path, repo_id: str, token: Optional[str] = None, private: bool = False) -> str:
    """Uploads an exported folder to the Hugging Face hub (needs network and a token).

    Returns the URL of the commit.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="babeltower export")
    return str(info)


def t2i_model_card(eval_report: Optional[dict] = None) -> str:
    """Model card of a text-to-image pipeline folder."""
    languages = sorted((eval_report or {}).get("languages", []))
    return model_card(
        "babeltower multilingual text-to-image pipeline",
        languages,
        (eval_report or {}).get("markdown"),
        usage="Load with `diffusers.DiffusionPipeline.from_pretrained(path)` once babeltower is installed "
        "(the pipeline class is `babeltower.models.t2i.BabelTowerText2ImagePipeline`), or run "
        "`babeltower generate PATH --prompt ...`; ",
        tag="text-to-image",
        subfolder_note="`unet/` loads with `diffusers.UNet2DConditionModel.from_pretrained`, `text_encoder/` with "
        "`transformers.AutoModel.from_pretrained`, `scheduler/` with any diffusers scheduler's `from_pretrained`.",
    )


def load_t2i_pipeline(folder: str | Path):
    """Loads a folder written by ``Text2ImageSystem.export_hub`` (a diffusers pipeline folder)."""
    from babeltower.models.t2i import BabelTowerText2ImagePipeline

    folder = Path(folder)
    index = json.loads(_require(folder / MODEL_INDEX, "model_index.json").read_text())
    name = index.get("_class_name")
    if (name[-1] if isinstance(name, list) and name else name) != BabelTowerText2ImagePipeline.__name__:
        raise ValueError(
            f"{folder / MODEL_INDEX} describes a {index.get('_class_name')!r}, not a "
            f"{BabelTowerText2ImagePipeline.__name__} (export a text-to-image checkpoint with `babeltower export`)"
        )
    return BabelTowerText2ImagePipeline.from_pretrained(str(folder))
