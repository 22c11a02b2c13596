"""babeltower.eval.heldout_text: the held-out probes score a perfect and a useless student correctly."""

import torch

from babeltower.eval.heldout_text import EVERYDAY_SENTENCES, everyday_retrieval, monolingual_fit


def _lookup_encoder(texts_to_rows: dict[str, int], dim: int = 64):
    table = torch.nn.functional.normalize(torch.randn(len(texts_to_rows), dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    return lambda texts: table[[texts_to_rows[t] for t in texts]]


def test_everyday_sentences_are_aligned_and_scored():
    assert all(len(v) == 8 for v in EVERYDAY_SENTENCES.values()) and len(EVERYDAY_SENTENCES) == 10
    # an encoder mapping every translation to its English sentence's vector: perfect retrieval
    rows = {t: i for texts in EVERYDAY_SENTENCES.values() for i, t in enumerate(texts)}
    assert set(everyday_retrieval(_lookup_encoder(rows)).values()) == {1.0}
    # one that maps every sentence of a language to the same vector: R@1 = 1/8
    rows = {t: j for j, texts in enumerate(EVERYDAY_SENTENCES.values()) for t in texts}
    assert set(everyday_retrieval(_lookup_encoder(rows)).values()) == {0.125}


def test_monolingual_fit_counts_agreement_per_language():
    items = [{"src": f"w{i}", "lang": "de" if i < 5 else "ja"} for i in range(10)]
    rows = {item["src"]: i for i, item in enumerate(items)}
    same = monolingual_fit(_lookup_encoder(rows), _lookup_encoder(rows), items)
    assert same["r1"] == 1.0 and same["cos"] == 1.0 and same["per_language"]["de"]["n"] == 5
    shuffled = {item["src"]: (i + 1) % 10 for i, item in enumerate(items)}
    other = monolingual_fit(_lookup_encoder(shuffled), _lookup_encoder(rows), items)
    assert other["r1"] == 0.0 and other["chance"] == 0.1
