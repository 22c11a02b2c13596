"""babeltower.models.attention: every backend agrees with the math reference."""

import pytest
import torch

from babeltower.models.attention import (
    MultiheadSelfAttention,
    attention,
    check_backend,
    padding_mask_to_attention_mask,
)

B, NH, HS = 2, 3, 8


def _qkv(t: int, s: int, seed: int = 0, device: str = "cpu", dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(B, NH, t, HS, generator=generator)
    k = torch.randn(B, NH, s, HS, generator=generator)
    v = torch.randn(B, NH, s, HS, generator=generator)
    return q.to(device, dtype), k.to(device, dtype), v.to(device, dtype)


def _padding(lengths: list[int], s: int) -> torch.Tensor:
    return torch.arange(s)[None, :] < torch.tensor(lengths)[:, None]  # (B, S) True = real token


def _assert_backends_agree(q, k, v, mask=None, is_causal=False):
    out_math = attention(q, k, v, mask, is_causal=is_causal, backend="math")
    out_sdpa = attention(q, k, v, mask, is_causal=is_causal, backend="sdpa")
    assert out_sdpa.shape == q.shape
    assert not torch.isnan(out_sdpa).any()
    torch.testing.assert_close(out_sdpa, out_math, atol=1e-5, rtol=1e-5)
    return out_math


def test_bool_padding_mask():
    q, k, v = _qkv(5, 5)
    mask = padding_mask_to_attention_mask(_padding([5, 3], 5))  # (B, 1, 1, S)
    out = _assert_backends_agree(q, k, v, mask)
    # Padded keys must not matter: changing them leaves row 1 unchanged.
    k2, v2 = k.clone(), v.clone()
    k2[1, :, 3:], v2[1, :, 3:] = 100.0, 100.0
    torch.testing.assert_close(attention(q, k2, v2, mask, backend="math")[1], out[1])


def test_causal():
    q, k, v = _qkv(6, 6)
    out = _assert_backends_agree(q, k, v, is_causal=True)
    # The first query sees only the first key.
    torch.testing.assert_close(out[:, :, 0], v[:, :, 0])


def test_causal_without_mask_and_t_neq_s_is_bottom_right_aligned():
    q, k, v = _qkv(2, 5)
    out = _assert_backends_agree(q, k, v, is_causal=True)
    # Bottom-right alignment: the last query sees every key, as in KV-cached decoding.
    torch.testing.assert_close(out[:, :, -1:], attention(q[:, :, -1:], k, v, backend="math"))


def test_causal_plus_padding_t_neq_s():
    q, k, v = _qkv(3, 7)
    mask = padding_mask_to_attention_mask(_padding([7, 5], 7))
    _assert_backends_agree(q, k, v, mask, is_causal=True)


def test_float_additive_mask():
    q, k, v = _qkv(4, 6)
    bias = torch.randn(B, 1, 4, 6, generator=torch.Generator().manual_seed(1))
    bias[1, :, :, 4:] = float("-inf")
    _assert_backends_agree(q, k, v, bias)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_rows_give_zeros(kind):
    q, k, v = _qkv(4, 4)
    allowed = torch.ones(B, 1, 4, 4, dtype=torch.bool)
    allowed[0, :, 2] = False  # query 2 of batch 0 may attend to nothing
    mask = allowed if kind == "bool" else torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
    for backend in ("math", "sdpa"):
        out = attention(q, k, v, mask, backend=backend)
        assert torch.equal(out[0, :, 2], torch.zeros_like(out[0, :, 2])), backend
        assert not torch.isnan(out).any(), backend
    _assert_backends_agree(q, k, v, mask)


def test_unknown_backend_names_the_field():
    q, k, v = _qkv(2, 2)
    with pytest.raises(ValueError, match="attn_backend"):
        attention(q, k, v, backend="flash")


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_multihead_self_attention_matches_torch(backend):
    torch.manual_seed(0)
    embed_dim, heads, t = 16, 4, 6
    reference = torch.nn.MultiheadAttention(embed_dim, heads, batch_first=True).eval()
    ours = MultiheadSelfAttention(embed_dim, heads, backend=backend).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(B, t, embed_dim)
    key_padding_mask = ~_padding([6, 4], t)  # torch convention: True = ignore
    with torch.no_grad():
        expected, _ = reference(x, x, x, key_padding_mask=key_padding_mask, need_weights=False)
        got, _ = ours(x, x, x, key_padding_mask=key_padding_mask)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        causal = torch.ones(t, t, dtype=torch.bool).triu(1)  # torch convention: True = disallowed
        expected, _ = reference(x, x, x, attn_mask=causal, need_weights=False)
        got, _ = ours(x, attn_mask=causal)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_xformers_on_cpu_raises_and_points_to_sdpa():
    with pytest.raises(RuntimeError, match="sdpa"):
        check_backend("xformers", "cpu")
    q, k, v = _qkv(2, 2)
    with pytest.raises(RuntimeError, match="sdpa"):
        attention(q, k, v, backend="xformers")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_xformers_matches_math_on_cuda():
    check_backend("xformers", "cuda")
    q, k, v = _qkv(5, 9, device="cuda", dtype=torch.float16)
    mask = padding_mask_to_attention_mask(_padding([9, 6], 9).cuda())
    cases = [(None, False), (mask, False), (None, True), (mask, True)]
    q_sq, k_sq, v_sq = _qkv(6, 6, device="cuda", dtype=torch.float16)
    for m, causal in cases:
        expected = attention(q, k, v, m, is_causal=causal, backend="math")
        got = attention(q, k, v, m, is_causal=causal, backend="xformers")
        torch.testing.assert_close(got, expected, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(
        attention(q_sq, k_sq, v_sq, is_causal=True, backend="xformers"),
        attention(q_sq, k_sq, v_sq, is_causal=True, backend="math"),
        atol=2e-3,
        rtol=2e-3,
    )
