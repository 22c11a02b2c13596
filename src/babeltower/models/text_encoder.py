"""The shared multilingual text encoder every babeltower head uses.

The backbone is a plain transformers encoder (XLM-R by default, or any encoder
``model_type``), built tiny from a config or loaded from a pretrained checkpoint. On
top sit pooling (mean over real tokens, or the ``<s>`` token) and an optional linear
projection into a joint embedding space.

Attention runs through :func:`babeltower.models.attention.attention`: this module
registers ``babeltower_sdpa`` / ``babeltower_math`` / ``babeltower_xformers`` with
transformers' ``AttentionInterface`` and selects one on the backbone, so the encoder
follows the same ``attn_backend`` switch as the rest of the project while staying a
stock transformers model (its saved folder loads with ``AutoModel.from_pretrained``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from babeltower.models.attention import ATTENTION_BACKENDS, attention

CONFIG_FILE = "babeltower_text_encoder.json"
BACKBONE_CONFIG_FILE = "config.json"
BACKBONE_WEIGHTS_FILE = "model.safetensors"
PROJECTION_WEIGHTS_FILE = "text_projection.safetensors"
POOLING_MODES: tuple[str, ...] = ("mean", "cls")


@dataclass
class TextEncoderConfig:
    """Architecture of the shared text encoder."""

    pretrained: Optional[str] = None
    """HF model name or local folder (config.json + weights), e.g. an XLM-R checkpoint.
    When set, the architecture fields below (model_type ... dropout) are ignored."""

    model_type: str = "xlm-roberta"
    """transformers encoder model_type for a from-scratch build, e.g. "xlm-roberta", "bert"."""

    tokenizer: Optional[str] = None
    """Tokenizer folder. None: the pretrained checkpoint's tokenizer when `pretrained` is
    set, else babeltower's packaged default tokenizer. The vocabulary size is taken from it."""

    hidden_size: int = 32
    """Width of the hidden states."""

    num_hidden_layers: int = 2
    """Number of transformer layers."""

    num_attention_heads: int = 2
    """Attention heads per layer; must divide hidden_size."""

    intermediate_size: int = 64
    """Width of the feed-forward layer."""

    max_position_embeddings: int = 130
    """Position table size. XLM-R offsets positions by pad_id + 1 = 2, so 130 fits 128 tokens."""

    dropout: float = 0.0
    """Dropout on hidden states and attention probabilities (from-scratch builds)."""

    pooling: str = "mean"
    """How a sequence becomes one vector: "mean" over non-pad tokens, or "cls" (the <s> token)."""

    projection_dim: Optional[int] = None
    """Output width of a linear projection of the pooled vector; None: no projection,
    the embedding is the pooled vector (width hidden_size)."""

    attn_backend: str = "sdpa"
    """Attention kernel: "sdpa" (torch SDPA), "math" (reference), "xformers" (CUDA only)."""

    gradient_checkpointing: bool = False
    """Recompute backbone activations in backward to save memory (training mode only)."""

    query_prefix: Optional[str] = None
    """Text the encoder puts before every input in the default "query" role (e5: "query: ").
    The encoder inserts the prefix's token ids after <s> itself: callers pass plain text.
    None: the value stored in the `pretrained` folder's babeltower_text_encoder.json, else ""."""

    passage_prefix: Optional[str] = None
    """Prefix in the "passage" role (documents to retrieve; e5: "passage: "). None: as query_prefix."""

    trainable_layers: Optional[int] = None
    """How much of the backbone trains: 0 freezes it (embeddings and every layer; the
    imported e5 folder stores 0, so it is frozen unless this is set), N > 0 trains only the
    last N layers, -1 trains everything. None: the `pretrained` folder's stored value, else
    everything. The projection always trains."""

    cache_size: int = 16384
    """Distinct texts (token-id sequences) whose token states and pooled vector are kept
    while the backbone is frozen (an LRU; 0: no cache). A frozen backbone in eval mode is a
    pure function of the ids, so repeated captions cost one lookup instead of a forward
    pass. Memory: about cache_size x tokens x hidden_size x 4 bytes (e5, 20 tokens: 30 kB
    a text, 500 MB when full at 16384; the whole scene grammar has about 15k captions)."""

    frozen_autocast: Optional[str] = None
    """Run a frozen backbone under autocast in this dtype ("bfloat16" or "float16"); its
    states come back in float32. On CPUs with bf16 matrix units multilingual-e5-small
    encodes 2-3x faster in bfloat16 (an uncached training step of benchmarks/bench_encoder.py:
    2.0x), its pooled embeddings at cosine >= 0.9999 to float32's. None: full precision. A
    backbone that trains is never autocast by this field (use the trainer's precision)."""

    def __post_init__(self) -> None:
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"TextEncoderConfig.pooling must be one of {POOLING_MODES}, got {self.pooling!r}")
        if self.attn_backend not in ATTENTION_BACKENDS:
            raise ValueError(
                f"TextEncoderConfig.attn_backend must be one of {ATTENTION_BACKENDS}, got {self.attn_backend!r}"
            )
        if self.projection_dim is not None and self.projection_dim <= 0:
            raise ValueError(
                f"TextEncoderConfig.projection_dim must be a positive int or None, got {self.projection_dim}"
            )
        if self.trainable_layers is not None and self.trainable_layers < -1:
            raise ValueError(
                f"TextEncoderConfig.trainable_layers must be -1 (all), 0 (frozen), N > 0 (the last N layers) "
                f"or null, got {self.trainable_layers}"
            )
        if self.cache_size < 0:
            raise ValueError(f"TextEncoderConfig.cache_size must be >= 0 (0: no cache), got {self.cache_size}")
        if self.frozen_autocast not in (None, "bfloat16", "float16"):
            raise ValueError(
                f"TextEncoderConfig.frozen_autocast must be null, \"bfloat16\" or \"float16\", got {self.frozen_autocast!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TextEncoderConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.pretrained is None:
            for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                         "max_position_embeddings"):
                if getattr(self, name) <= 0:
                    raise ValueError(f"TextEncoderConfig.{name} must be positive, got {getattr(self, name)}")
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"TextEncoderConfig.num_attention_heads={self.num_attention_heads} must divide "
                    f"hidden_size={self.hidden_size}; e.g. num_attention_heads="
                    f"{_largest_divisor_at_most(self.hidden_size, self.num_attention_heads)}"
                )


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) states and a (B, T) 0/1 or bool mask -> (B, H) mean over the kept positions.

    An all-masked row pools to zeros instead of NaN.
    """
    weights = mask.to(states.dtype).unsqueeze(-1)  # (B, T, 1)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


@dataclass
class TextEncoderOutput:
    """What :class:`TextEncoder` returns.

    Attributes:
        last_hidden_state: (B, T, H) token states, for heads that cross-attend to text.
        pooled: (B, H) the pooled sequence vector.
        embeds: (B, D) the sequence embedding: ``text_projection(pooled)``, or ``pooled``
            when there is no projection (D = H).
    """

    last_hidden_state: torch.Tensor
    pooled: torch.Tensor
    embeds: torch.Tensor


# --- attention routing -------------------------------------------------------------------


def attn_implementation_name(backend: str) -> str:
    """The transformers ``attn_implementation`` string that routes to ``backend``."""
    return f"babeltower_{backend}"


def _make_attention_forward(backend: str):
    """Returns a transformers attention function that runs babeltower's ``attention`` with ``backend``."""

    def babeltower_attention_forward(
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: Optional[torch.Tensor],
        dropout: float = 0.0,
        scaling: Optional[float] = None,
        is_causal: Optional[bool] = None,
        position_bias: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> tuple[torch.Tensor, None]:
        # query: (B, nh, T, hs); key/value: (B, nkv, S, hs)
        if kwargs.get("softcap") is not None:
            raise ValueError(f"attn_backend={backend!r} does not support logit softcapping; use an 'eager' model")
        groups = getattr(module, "num_key_value_groups", 1)
        if groups > 1:  # grouped-query attention: share each key/value head across `groups` query heads
            key = key.repeat_interleave(groups, dim=1)
            value = value.repeat_interleave(groups, dim=1)
        # transformers builds masks for us through the mask function registered below (sdpa's:
        # bool, True = attend), but a caller may hand the model a ready 4D mask, which is
        # float-additive in transformers' convention (0 / dtype.min). attention() takes both.
        if position_bias is not None:  # T5-style relative bias: fold it into one additive mask
            if attention_mask is None:
                attention_mask = position_bias
            elif attention_mask.dtype == torch.bool:
                attention_mask = position_bias.masked_fill(~attention_mask, torch.finfo(position_bias.dtype).min)
            else:
                attention_mask = position_bias + attention_mask
        is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", False)
        # Only use the implicit causal mask when no explicit mask was built (transformers then
        # already folded causality into the mask) and when there is more than one query.
        is_causal = bool(is_causal and attention_mask is None and query.shape[2] > 1)
        out = attention(
            query, key, value, attention_mask,
            is_causal=is_causal, dropout_p=dropout, scale=scaling, backend=backend,
        )  # (B, nh, T, hs)
        return out.transpose(1, 2).contiguous(), None  # (B, T, nh, hs), no attention weights

    babeltower_attention_forward.__name__ = f"babeltower_{backend}_attention_forward"
    return babeltower_attention_forward


def register_attention_backends() -> None:
    """Registers ``babeltower_<backend>`` attention (and mask) functions with transformers.

    Idempotent; runs on import of this module. The mask function is transformers' own
    ``sdpa_mask`` (a bool mask, True = attend): without a registered mask function,
    transformers passes *no* mask to a custom attention function, silently attending to
    padding.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    for backend in ATTENTION_BACKENDS:
        name = attn_implementation_name(backend)
        AttentionInterface.register(name, _make_attention_forward(backend))
        AttentionMaskInterface.register(name, sdpa_mask)


register_attention_backends()


# --- the encoder -------------------------------------------------------------------------


def resolve_tokenizer(config: TextEncoderConfig):
    """The tokenizer an encoder built from ``config`` uses (see ``TextEncoderConfig.tokenizer``)."""
    from babeltower.modalities.text import load_tokenizer, load_tokenizer_or_default

    if config.tokenizer is not None:
        return load_tokenizer(config.tokenizer)
    if config.pretrained is not None:
        from transformers import AutoTokenizer

        # A pretrained backbone's embedding rows only make sense with its own tokenizer.
        return AutoTokenizer.from_pretrained(config.pretrained)
    return load_tokenizer_or_default(None)


#: Fields that a `pretrained` folder's babeltower_text_encoder.json supplies when the config leaves them None.
FOLDER_DEFAULT_FIELDS: tuple[str, ...] = ("query_prefix", "passage_prefix", "trainable_layers")
ROLES: tuple[str, ...] = ("query", "passage", "none")


def resolve_config(config: TextEncoderConfig) -> TextEncoderConfig:
    """``config`` with :data:`FOLDER_DEFAULT_FIELDS` left None filled in.

    From the ``pretrained`` folder's ``babeltower_text_encoder.json`` when it has one
    (e.g. the imported e5 folder records e5's prefixes and a frozen backbone), else the
    plain defaults: no prefixes, every layer trains.
    """
    stored: dict = {}
    if config.pretrained is not None and (Path(config.pretrained) / CONFIG_FILE).is_file():
        stored = json.loads((Path(config.pretrained) / CONFIG_FILE).read_text(encoding="utf-8"))
    values = {name: getattr(config, name) for name in FOLDER_DEFAULT_FIELDS}
    for name, value in values.items():
        if value is None:
            values[name] = stored.get(name)
    if values["query_prefix"] is None:
        values["query_prefix"] = ""
    if values["passage_prefix"] is None:
        values["passage_prefix"] = values["query_prefix"]
    if values["trainable_layers"] is None:
        values["trainable_layers"] = -1
    return dataclasses.replace(config, **values)


def _prefix_token_ids(tokenizer, prefix: str, field: str) -> list[int]:
    """Token ids of ``prefix`` such that ``<s> + ids + tokens(text)`` equals ``tokens(prefix + text)``.

    Raises:
        ValueError: the tokenizer does not cut ``prefix + text`` at the prefix's end (e.g. a
            byte-level BPE, which glues the space to the next word), so the prefix cannot be
            inserted at the token level; the message names the config field.
    """
    if not prefix:
        return []
    ids = tokenizer(prefix.rstrip(), add_special_tokens=False)["input_ids"]
    for probe in ("Hello world.", "Ünïcode 例 テスト", "x"):
        joined = tokenizer(prefix + probe)["input_ids"]
        alone = tokenizer(probe)["input_ids"]
        if joined != alone[:1] + ids + alone[1:]:
            raise ValueError(
                f"TextEncoderConfig.{field}={prefix!r}: this tokenizer does not tokenize {prefix + probe!r} as the "
                f"prefix's tokens followed by those of {probe!r}, so the encoder cannot insert the prefix itself; "
                "use a prefix ending at a word boundary of a SentencePiece-style tokenizer, or none"
            )
    return ids


def _pooling_layer_kwargs(backbone_config) -> dict:
    # BERT-family models add a pooler (dense + tanh on <s>) by default; we pool ourselves,
    # so drop it where the class allows, to avoid dead, unsaved-but-expected weights.
    from transformers import AutoModel

    model_class = AutoModel._model_mapping[type(backbone_config)]
    if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        return {"add_pooling_layer": False}
    return {}


def load_backbone(folder: str | Path, **kwargs) -> nn.Module:
    """``AutoModel.from_pretrained(folder)``, without the pooler BERT-family classes add by
    default when the folder's safetensors hold none (babeltower pools the token states itself
    and never saves one), so transformers neither initialises a dead layer nor reports it as
    missing. A folder that saved a pooler gets it back."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel

    names: set[str] = set()
    files = sorted(Path(folder).glob("*.safetensors"))
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            names.update(handle.keys())
    saved_pooler = not files or any(name.startswith("pooler.") for name in names)
    extra = {} if saved_pooler else _pooling_layer_kwargs(AutoConfig.from_pretrained(str(folder)))
    return AutoModel.from_pretrained(str(folder), **kwargs, **extra)


class TextEncoder(nn.Module):
    """Multilingual text encoder: a transformers backbone, pooling and an optional projection.

    Args:
        config: the architecture; see :class:`TextEncoderConfig`.

    Attributes:
        backbone: the ``transformers.AutoModel`` encoder.
        text_projection: ``nn.Linear(H, projection_dim, bias=False)``, or None.
        embed_dim: width D of :attr:`TextEncoderOutput.embeds`.
    """

    def __init__(self, config: TextEncoderConfig, load_pretrained_weights: bool = True):
        """
        Args:
            config: the architecture.
            load_pretrained_weights: with ``config.pretrained``, load its weights (False: build
                the architecture only; :meth:`from_pretrained` loads the weights itself, strictly).
        """
        super().__init__()
        from transformers import AutoConfig, AutoModel

        config = resolve_config(config)
        self.config = config
        tokenizer = resolve_tokenizer(config)
        self._tokenizer = tokenizer
        self.pad_token_id = tokenizer.pad_token_id
        self.bos_token_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
        self.prefix_ids = {
            "query": _prefix_token_ids(tokenizer, config.query_prefix, "query_prefix"),
            "passage": _prefix_token_ids(tokenizer, config.passage_prefix, "passage_prefix"),
            "none": [],
        }
        self._cache: OrderedDict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.cache_hits = self.cache_misses = 0
        attn_implementation = attn_implementation_name(config.attn_backend)

        if config.pretrained is not None:
            backbone_config = AutoConfig.from_pretrained(config.pretrained)
            if load_pretrained_weights:
                self.backbone = AutoModel.from_pretrained(
                    config.pretrained, attn_implementation=attn_implementation, **_pooling_layer_kwargs(backbone_config)
                ).train()  # transformers returns eval mode; a module is built in train mode (frozen: see train())
            else:
                self.backbone = AutoModel.from_config(
                    backbone_config, attn_implementation=attn_implementation, **_pooling_layer_kwargs(backbone_config)
                )
        else:
            backbone_config = AutoConfig.for_model(
                config.model_type,
                vocab_size=len(tokenizer),
                hidden_size=config.hidden_size,
                num_hidden_layers=config.num_hidden_layers,
                num_attention_heads=config.num_attention_heads,
                intermediate_size=config.intermediate_size,
                max_position_embeddings=config.max_position_embeddings,
                hidden_dropout_prob=config.dropout,
                attention_probs_dropout_prob=config.dropout,
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            # The fields above use BERT-family names; a model_type that spells them otherwise
            # and lacks an attribute_map would silently build the wrong size.
            for name in ("hidden_size", "num_hidden_layers", "num_attention_heads"):
                if getattr(backbone_config, name, None) != getattr(config, name):
                    raise ValueError(
                        f"TextEncoderConfig.model_type={config.model_type!r} does not take the field "
                        f"{name!r} (its config has {name}={getattr(backbone_config, name, None)!r}); "
                        "use a BERT-family encoder such as 'xlm-roberta', 'bert', 'roberta' or 'electra'"
                    )
            self.backbone = AutoModel.from_config(
                backbone_config, attn_implementation=attn_implementation, **_pooling_layer_kwargs(backbone_config)
            )

        hidden_size = self.backbone.config.hidden_size
        embedding_rows = self.backbone.get_input_embeddings().num_embeddings
        if len(tokenizer) > embedding_rows:
            raise ValueError(
                f"tokenizer has {len(tokenizer)} tokens but the backbone embeds only {embedding_rows}: "
                "TextEncoderConfig.tokenizer does not belong to TextEncoderConfig.pretrained"
            )
        self.text_projection = (
            nn.Linear(hidden_size, config.projection_dim, bias=False) if config.projection_dim is not None else None
        )
        self.embed_dim = config.projection_dim if config.projection_dim is not None else hidden_size
        if config.gradient_checkpointing:
            # transformers 5 renamed gradient_checkpointing_enable (now a deprecated alias) to
            # activation_checkpointing_enable. Non-reentrant checkpointing is needed because the
            # inputs (token ids) carry no grad.
            self.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        self.apply_trainable_layers()
        # Loading weights into the encoder, or into its backbone alone (hub.strict_load), or
        # into a parent module (Lightning checkpoints) invalidates the frozen-backbone cache.
        self.register_load_state_dict_pre_hook(self._clear_cache_on_load)
        self.backbone.register_load_state_dict_pre_hook(self._clear_cache_on_load)

    # --- freezing and the frozen-backbone cache ----------------------------------------------

    def apply_trainable_layers(self, trainable_layers: Optional[int] = None) -> None:
        """Sets ``requires_grad`` on the backbone from ``config.trainable_layers`` (or the argument).

        0 freezes the backbone (and puts it in eval mode: no dropout, so its output is a
        function of the ids and can be cached); N > 0 freezes all but the last N layers;
        -1 trains everything.

        Raises:
            ValueError: N exceeds the backbone's layers, or the backbone's layers cannot be found.
        """
        n = self.config.trainable_layers if trainable_layers is None else trainable_layers
        if n is None or n < 0:
            self.backbone.requires_grad_(True)
            return
        self.backbone.requires_grad_(False)
        if n > 0:
            layers = getattr(getattr(self.backbone, "encoder", None), "layer", None)
            if layers is None:
                raise ValueError(
                    f"TextEncoderConfig.trainable_layers={n}: {type(self.backbone).__name__} has no encoder.layer "
                    "list to unfreeze; use 0 (frozen) or -1 (all)"
                )
            if n > len(layers):
                raise ValueError(
                    f"TextEncoderConfig.trainable_layers={n} exceeds the backbone's {len(layers)} layers; "
                    f"use at most {len(layers)} or -1 (all)"
                )
            for layer in layers[len(layers) - n :]:
                layer.requires_grad_(True)
        self.train(self.training)

    @property
    def backbone_frozen(self) -> bool:
        """True when no backbone weight trains (then it runs in eval mode and its output is cached)."""
        return not any(p.requires_grad for p in self.backbone.parameters())

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.backbone_frozen:
            self.backbone.eval()  # a frozen backbone keeps dropout off: deterministic, cacheable
        return self

    def clear_cache(self) -> None:
        """Forgets every cached text (done automatically when weights are loaded or unfrozen)."""
        self._cache.clear()

    def _clear_cache_on_load(self, *args, **kwargs) -> None:
        self.clear_cache()  # a load_state_dict pre-hook: cached states belong to the old weights

    def tokenizer(self):
        """The tokenizer this encoder was built with (see :attr:`TextEncoderConfig.tokenizer`)."""
        return self._tokenizer

    def _insert_prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, role: str):
        """(B, T) ids -> (B, P + T) ids with the role's prefix tokens after <s>."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        prefix = self.prefix_ids[role]
        if not prefix:
            return input_ids, attention_mask
        if not bool((input_ids[:, 0] == self.bos_token_id).all()):
            raise ValueError(
                f"input_ids must start with <s> (id {self.bos_token_id}) to insert the {role} prefix "
                f"{getattr(self.config, role + '_prefix')!r}; tokenize with special tokens and right padding"
            )
        b = input_ids.shape[0]
        p = torch.tensor(prefix, dtype=input_ids.dtype, device=input_ids.device).expand(b, -1)  # (B, P)
        ids = torch.cat([input_ids[:, :1], p, input_ids[:, 1:]], dim=1)  # (B, P + T)
        mask = torch.cat([attention_mask[:, :1], torch.ones_like(p), attention_mask[:, 1:]], dim=1)
        return ids, mask

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "mean":
            return masked_mean(hidden, attention_mask)  # (B, H)
        return hidden[:, 0]  # (B, H): the <s> token

    def _run_backbone(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        if self.config.frozen_autocast and self.backbone_frozen:
            dtype = getattr(torch, self.config.frozen_autocast)
            with torch.no_grad(), torch.autocast(device_type=input_ids.device.type, dtype=dtype):
                hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            hidden = hidden.float()  # (B, T, H)
        else:
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        return hidden, self._pool(hidden, attention_mask)

    @torch.no_grad()
    def _cached_backbone(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """:meth:`_run_backbone` through the LRU cache (frozen backbone, right padding)."""
        b, t = input_ids.shape
        lengths = attention_mask.sum(1)  # (B,)
        keys = [tuple(row[:n].tolist()) for row, n in zip(input_ids.cpu(), lengths.cpu().tolist())]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        self.cache_hits += b - len(missing)
        self.cache_misses += len(missing)
        fresh = {}
        if missing:
            longest = max(len(k) for k in missing)
            ids = torch.full((len(missing), longest), self.pad_token_id, dtype=input_ids.dtype)
            mask = torch.zeros((len(missing), longest), dtype=attention_mask.dtype)
            for i, key in enumerate(missing):
                ids[i, : len(key)] = torch.tensor(key, dtype=input_ids.dtype)
                mask[i, : len(key)] = 1
            hidden, pooled = self._run_backbone(ids.to(input_ids.device), mask.to(input_ids.device))
            for i, key in enumerate(missing):
                fresh[key] = (hidden[i, : len(key)].clone(), pooled[i].clone())
                self._cache[key] = fresh[key]
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)
        rows = []
        for key in keys:
            if key in self._cache:
                self._cache.move_to_end(key)
                rows.append(self._cache[key])
            else:  # evicted within this very batch (cache smaller than the batch)
                rows.append(fresh[key])
        width = rows[0][1].shape[-1]
        hidden = input_ids.new_zeros((b, t, width), dtype=rows[0][0].dtype)  # padding positions stay 0
        for i, (states, _) in enumerate(rows):
            hidden[i, : states.shape[0]] = states.to(input_ids.device)
        pooled = torch.stack([pooled.to(input_ids.device) for _, pooled in rows])  # (B, H)
        return hidden, pooled

    def forward(
        self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, role: str = "query"
    ) -> TextEncoderOutput:
        """Encodes a batch of token ids.

        Args:
            input_ids: (B, T) token ids from the encoder's tokenizer, <s> first, padded on
                the right (as :func:`babeltower.modalities.text.tokenize` returns them).
            attention_mask: (B, T), 1 for real tokens and 0 for padding. None: every
                token is real.
            role: "query" (default) or "passage" selects the prefix the encoder inserts
                after <s> (``config.query_prefix`` / ``passage_prefix``; e5: "query: " /
                "passage: "); "none" inserts nothing.

        Returns:
            :class:`TextEncoderOutput` with last_hidden_state (B, T, H) (the states of the
            given tokens: prefix positions are dropped after they have been attended to),
            pooled (B, H) (mean over every real token, the prefix's included, as e5 pools)
            and embeds (B, D).

        With a frozen backbone and ``config.cache_size > 0`` the backbone runs only for
        token sequences it has not seen (see :attr:`TextEncoderConfig.cache_size`).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        ids, mask = self._insert_prefix(input_ids, attention_mask, role)
        n_prefix = ids.shape[1] - input_ids.shape[1]
        frozen = self.backbone_frozen
        if not frozen and self._cache:
            self.clear_cache()  # weights may change from now on
        right_padded = bool((mask == (torch.arange(mask.shape[1], device=mask.device) < mask.sum(1, keepdim=True))).all())
        if frozen and self.config.cache_size > 0 and not self.backbone.training and right_padded:
            hidden, pooled = self._cached_backbone(ids, mask)
        else:
            hidden, pooled = self._run_backbone(ids, mask)
        if n_prefix:
            hidden = torch.cat([hidden[:, :1], hidden[:, 1 + n_prefix :]], dim=1)  # (B, T, H)
        embeds = self.text_projection(pooled) if self.text_projection is not None else pooled  # (B, D)
        return TextEncoderOutput(last_hidden_state=hidden, pooled=pooled, embeds=embeds)

    @torch.no_grad()
    def encode(self, texts: list[str], tokenizer=None, max_length: int = 128, role: str = "query",
               batch_size: int = 256, output: str = "embeds") -> torch.Tensor:
        """Tokenizes and encodes strings (inference convenience, no grad), in batches.

        Args:
            texts: the strings (plain text: the encoder adds its own prefix).
            tokenizer: the encoder's tokenizer; None: :meth:`tokenizer`.
            max_length: longest token sequence kept, special tokens included (prefix not counted).
            role: "query", "passage" or "none" (see :meth:`forward`).
            batch_size: texts per forward pass.
            output: "embeds" (after the projection, if any) or "pooled" (the backbone's
                pooled vector, before any projection a head added).

        Returns:
            (B, D) embeddings on the encoder's device.
        """
        from babeltower.modalities.text import tokenize

        if output not in ("embeds", "pooled"):
            raise ValueError(f"encode(output=...) must be 'embeds' or 'pooled', got {output!r}")
        tokenizer = tokenizer if tokenizer is not None else self._tokenizer
        device = next(self.parameters()).device
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = tokenize(tokenizer, list(texts[start : start + batch_size]), max_length)
            out = self(batch["input_ids"].to(device), batch["attention_mask"].to(device), role=role)
            chunks.append(getattr(out, output))
        width = self.embed_dim if output == "embeds" else self.backbone.config.hidden_size
        return torch.cat(chunks) if chunks else torch.zeros(0, width, device=device)

    def save_pretrained(self, folder: str | Path, tokenizer=None) -> None:
        """Writes the encoder as a folder that both babeltower and plain transformers load.

        Files: ``config.json`` + ``model.safetensors`` (the backbone, loadable with
        ``transformers.AutoModel.from_pretrained(folder)``), ``babeltower_text_encoder.json``
        (the :class:`TextEncoderConfig` fields, with ``pretrained`` and ``tokenizer`` null
        since the folder itself now holds both), ``text_projection.safetensors`` when
        there is a projection, and the tokenizer files.

        Args:
            folder: output folder, created if missing.
            tokenizer: the tokenizer to store; None loads the one this encoder was built with.
        """
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(str(folder))
        fields = dataclasses.asdict(self.config)
        fields.update(pretrained=None, tokenizer=None)
        (folder / CONFIG_FILE).write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
        if self.text_projection is not None:
            weights = {f"text_projection.{k}": v.detach().contiguous() for k, v in self.text_projection.state_dict().items()}
            save_file(weights, str(folder / PROJECTION_WEIGHTS_FILE))
        if tokenizer is None:
            tokenizer = resolve_tokenizer(self.config)
        tokenizer.save_pretrained(str(folder))

    @classmethod
    def from_pretrained(cls, folder: str | Path, **overrides) -> "TextEncoder":
        """Loads a folder written by :meth:`save_pretrained`, strictly.

        Args:
            folder: the folder.
            **overrides: TextEncoderConfig fields to change that do not touch weights,
                e.g. ``attn_backend="math"`` or ``gradient_checkpointing=True``.

        Returns:
            The encoder, in eval mode, with ``config.pretrained`` and ``config.tokenizer``
            pointing at ``folder``.

        Raises:
            FileNotFoundError: a required file is missing (named in the message).
            ValueError: ``babeltower_text_encoder.json`` has unknown fields, or an override
                would change the weights' shapes.
            RuntimeError: the weight files lack weights the model has, or hold weights it
                does not have; the message lists the keys.
        """
        from safetensors.torch import load_file

        folder = Path(folder)
        for name in (CONFIG_FILE, BACKBONE_CONFIG_FILE, BACKBONE_WEIGHTS_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(
                    f"{str(folder)!r} is not a babeltower text encoder folder: {name} is missing "
                    "(TextEncoder.save_pretrained writes it)"
                )
        fields = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(TextEncoderConfig)}
        unknown = sorted(set(fields) - known) + sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"{folder / CONFIG_FILE}: unknown TextEncoderConfig fields {unknown}; known: {sorted(known)}")
        weight_fields = {"pretrained", "tokenizer", "projection_dim", "model_type", "hidden_size",
                         "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings"}
        if set(overrides) & weight_fields:
            raise ValueError(f"cannot override {sorted(set(overrides) & weight_fields)} when loading saved weights")
        fields.update(overrides)
        if fields.get("projection_dim") is not None and not (folder / PROJECTION_WEIGHTS_FILE).is_file():
            raise FileNotFoundError(
                f"{str(folder)!r}: {PROJECTION_WEIGHTS_FILE} is missing but {CONFIG_FILE} sets "
                f"projection_dim={fields['projection_dim']}"
            )
        # The backbone architecture comes from the folder's config.json (it may have been a
        # pretrained checkpoint whose config the dataclass fields do not describe); the tokenizer
        # files sit in the same folder.
        fields.update(pretrained=str(folder), tokenizer=str(folder))
        encoder = cls(TextEncoderConfig(**fields), load_pretrained_weights=False)

        # transformers' from_pretrained only warns about missing/unexpected weights; reload
        # every tensor ourselves with strict checks.
        state = {f"backbone.{k}": v for k, v in load_file(str(folder / BACKBONE_WEIGHTS_FILE)).items()}
        if encoder.text_projection is not None:
            state.update(load_file(str(folder / PROJECTION_WEIGHTS_FILE)))
        elif (folder / PROJECTION_WEIGHTS_FILE).is_file():
            raise RuntimeError(
                f"{folder / PROJECTION_WEIGHTS_FILE} exists but {CONFIG_FILE} has projection_dim=null; "
                "set projection_dim to the projection's output width or delete the file"
            )
        expected = set(encoder.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise RuntimeError(
                f"weights in {str(folder)!r} do not match the model: missing {missing}, unexpected {unexpected}"
            )
        encoder.load_state_dict(state, strict=True)
        return encoder.eval()
