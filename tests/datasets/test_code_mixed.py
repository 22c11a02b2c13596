import pytest

from babeltower.datasets.synthetic.scenes import LANGUAGES, SceneSpec, caption, code_mixed_caption, sample_scenes


def _english_noun(spec: SceneSpec) -> str:
    return spec.shape if spec.count == 1 else f"{spec.shape}s"


def test_code_mixed_inserts_english_noun_phrase_and_differs_from_monolingual():
    specs = list(sample_scenes(40, "train", 0)) + list(sample_scenes(20, "val", 0))
    for spec in specs:
        for lang in LANGUAGES:
            mixed = code_mixed_caption(spec, lang)
            if lang == "en":
                assert mixed == caption(spec, "en")
                continue
            assert f"{spec.colour} {_english_noun(spec)}" in mixed, (lang, mixed)
            assert mixed != caption(spec, lang)


def test_code_mixed_keeps_matrix_language_grammar():
    spec = SceneSpec(shape="circle", colour="red", count=2, position="top", size="large")
    assert code_mixed_caption(spec, "fr") == "deux grands red circles en haut"
    assert code_mixed_caption(spec, "ru") == "два больших red circles сверху"
    assert code_mixed_caption(spec, "ja") == "上に大きい red circles が二つ"
    star = SceneSpec(shape="star", colour="purple", count=1, position="left", size="small")
    assert code_mixed_caption(star, "de") == "ein kleiner purple star links"  # Stern is masculine


def test_code_mixed_errors():
    spec = SceneSpec(shape="circle", colour="red", count=1, position="top", size="large")
    with pytest.raises(ValueError, match="insert_lang='de'"):
        code_mixed_caption(spec, "fr", insert_lang="de")
    with pytest.raises(ValueError, match="'xx'"):
        code_mixed_caption(spec, "xx")
