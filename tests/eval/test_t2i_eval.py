import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from babeltower.datasets.synthetic.scenes import (
    SceneSpec,
    caption,
    code_mixed_caption,
    render_scene,
    sample_scenes,
)
from babeltower.eval.judge import (
    AttributeJudge,
    JudgeConfig,
    attribute_accuracy,
    judge_accuracy,
    num_parameters,
    train_judge,
)
from babeltower.eval.t2i import (
    evaluate_t2i,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    grid_image,
    pipeline_generator,
    write_t2i_report,
)

TINY_JUDGE = dict(channels=[4, 8], hidden_size=16)
LANGS = ["en", "fr", "ja"]
NUM_SCENES = 24


# --------------------------------------------------------------------------- FID


def test_frechet_distance_zero_for_identical_features():
    features = np.random.default_rng(0).normal(size=(200, 8))
    assert fid_from_features(features, features) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))  # 7.25 + 5.0
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(12.25)


def test_frechet_distance_singular_covariances_use_eps_offset():
    # Rank-1 covariances: sqrtm of their product is not finite, pytorch-fid retries with eps on the diagonal.
    sigma = np.zeros((3, 3))
    sigma[0, 0] = 1.0
    value = frechet_distance(np.zeros(3), sigma, np.ones(3), sigma)
    assert np.isfinite(value) and value == pytest.approx(3.0, abs=1e-2)
    with pytest.raises(ValueError, match="different shapes"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(np.zeros((1, 4)))


# ------------------------------------------------------------------------- judge


def test_judge_round_trip_and_strict_loading(tmp_path):
    torch.manual_seed(0)
    judge = AttributeJudge(JudgeConfig(**TINY_JUDGE)).eval()
    images = [render_scene(s, 32) for s in sample_scenes(4, "val", 0)] + [Image.new("RGB", (64, 48), "grey")]
    folder = judge.save_pretrained(tmp_path / "judge")
    loaded = AttributeJudge.from_pretrained(folder)
    pixels = judge.preprocess(images)
    assert pixels.shape == (5, 3, 32, 32)  # the 64x48 image was resized
    for name, logits in judge(pixels).items():
        assert torch.equal(logits, loaded(pixels)[name])
    predictions = loaded.predict(images)
    assert len(predictions) == 5 and set(predictions[0]) == {"colour", "shape", "count", "position", "size"}
    assert predictions[0]["count"] in {"1", "2", "3"}
    with pytest.raises(FileExistsError):
        judge.save_pretrained(folder)

    weights = folder / "model.safetensors"
    state = load_file(weights)
    save_file({**state, "extra.weight": torch.zeros(1)}, weights)
    with pytest.raises(RuntimeError, match=r"model\.safetensors.*unexpected keys \['extra\.weight'\]"):
        AttributeJudge.from_pretrained(folder)
    save_file({k: v for k, v in state.items() if k != "fc.bias"}, weights)
    with pytest.raises(RuntimeError, match=r"missing keys \['fc\.bias'\]"):
        AttributeJudge.from_pretrained(folder)

    save_file(state, weights)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "dropout": 0.1}))
    with pytest.raises(ValueError, match=r"config\.json: unknown JudgeConfig fields \['dropout'\]"):
        AttributeJudge.from_pretrained(folder)
    config_path.write_text(json.dumps({**config, "channels": []}))
    with pytest.raises(ValueError, match=r"config\.json: JudgeConfig\.channels"):
        AttributeJudge.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        AttributeJudge.from_pretrained(folder)


def test_default_judge_size_and_brief_training_learns_colour():
    assert 100_000 <= num_parameters(AttributeJudge(JudgeConfig())) <= 300_000
    judge = train_judge(num_train=512, steps=80, batch_size=32, lr=1e-2, seed=0,
                        config=JudgeConfig(**TINY_JUDGE), progress=False)
    accuracy = judge_accuracy(judge, list(sample_scenes(96, "val", 0)))
    assert accuracy["num_images"] == 96
    assert accuracy["colour"] > 0.5  # chance is 1/6
    assert judge.training_info["steps"] == 80 and judge.training_info["seconds"] > 0


def test_attribute_accuracy_counts_all_attributes():
    specs = [SceneSpec("circle", "red", 2, "top", "large"), SceneSpec("star", "blue", 1, "left", "small")]
    predictions = [dict(s.attributes(), count=str(s.count)) for s in specs]
    predictions[1]["shape"] = "heart"
    accuracy = attribute_accuracy(predictions, specs)
    assert accuracy["colour"] == 1.0 and accuracy["shape"] == 0.5 and accuracy["all"] == 0.5


# --------------------------------------------------------------------- evaluator


class OracleJudge:
    """Reads attributes exactly off real renders (by pixel bytes); a fixed guess for anything else."""

    GUESS = {"colour": "red", "shape": "circle", "count": "1", "position": "center", "size": "small"}

    def __init__(self, specs, image_size=32):
        self.config = JudgeConfig(image_size=image_size)
        self.table = {render_scene(s, image_size).tobytes(): {k: str(v) for k, v in s.attributes().items()} for s in specs}

    def predict(self, images):
        return [dict(self.table.get(im.tobytes(), self.GUESS)) for im in images]


def _scene_table(languages=LANGS):
    """prompt -> spec for every monolingual and code-mixed prompt of the evaluation scenes."""
    table = {}
    for spec in sample_scenes(NUM_SCENES, "val", 0):
        for lang in languages:
            table[caption(spec, lang)] = spec
            table[code_mixed_caption(spec, lang)] = spec
    return table


def _tiny_clip():
    from babeltower.modalities.text import default_tokenizer_path, load_tokenizer
    from babeltower.models.clip import CLIPConfig, CLIPModel
    from babeltower.models.text_encoder import TextEncoderConfig
    from babeltower.models.vision import vit_tiny

    torch.manual_seed(0)
    config = CLIPConfig(
        vision=vit_tiny(),
        text=TextEncoderConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        embed_dim=16,
    )
    return CLIPModel(config).eval(), load_tokenizer(default_tokenizer_path())


def test_perfect_generator_matches_judge_ceiling_and_agrees_across_languages(tmp_path):
    table = _scene_table()
    calls = []

    def generate(prompts, seeds):
        calls.append(len(prompts))
        for prompt, seed in zip(prompts, seeds):
            assert table[prompt].seed == seed  # the scene's own seed, in every language
        return [render_scene(table[p], 32) for p in prompts]

    specs = list(sample_scenes(NUM_SCENES, "val", 0))
    torch.manual_seed(0)
    judge = AttributeJudge(JudgeConfig(**TINY_JUDGE)).eval()  # untrained but deterministic: exact equalities hold
    report = evaluate_t2i(generate, judge=judge, clip=_tiny_clip(), languages=LANGS, num_scenes=NUM_SCENES,
                          batch_size=10, grid_scenes=3, progress=False)
    assert max(calls) == 10 and sum(calls) == NUM_SCENES * (2 * len(LANGS) - 1)
    ceiling = judge_accuracy(judge, specs)
    for lang in LANGS:
        for attribute in ("colour", "shape", "count", "position", "size", "all"):
            assert report["attribute_accuracy"][lang][attribute] == ceiling[attribute]
        assert report["per_language"][lang]["clip_score"] == pytest.approx(report["clip_score_real"][lang])
        assert report["fid"]["per_language"][lang] == pytest.approx(0.0, abs=1e-3)
    assert report["judge_real_accuracy"]["all"] == ceiling["all"]
    assert report["cross_lingual_attribute_agreement"] == 1.0
    assert set(report["cross_lingual"]["per_language"]) == {"fr", "ja"}
    assert report["cross_lingual"]["mean"]["image_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert report["code_mixed"]["mean_drop"]["all"] == 0.0
    assert report["fid"]["num_generated_all_languages"] == NUM_SCENES * len(LANGS)
    assert report["fid"]["real_vs_real"] > report["fid"]["all_languages"] >= -1e-6
    assert 0 <= report["mean"]["clip_score"] <= 100

    paths = write_t2i_report(report, tmp_path)
    saved = json.loads(paths["json"].read_text())
    assert "_grid" not in saved and saved["languages"] == LANGS and "code_mixed" in saved
    markdown = paths["markdown"].read_text()
    assert "CLIP-FID" in markdown and "no 2.5 weight" in markdown and "judge ceiling" in markdown
    assert "| ja |" in markdown
    for key in ("chart", "grid"):
        assert paths[key].read_bytes()[:4] == b"\x89PNG"
    with Image.open(paths["grid"]) as grid:
        assert grid.height > 3 * 96 and grid.width > (len(LANGS) + 1) * 96  # 3 rows, real + 3 language columns


def test_grey_generator_scores_low_with_oracle_judge():
    specs = list(sample_scenes(NUM_SCENES, "val", 0))
    oracle = OracleJudge(specs)

    def grey(prompts, seeds):
        return [Image.new("RGB", (32, 32), (128, 128, 128)) for _ in prompts]

    def perfect(prompts, seeds, table=_scene_table()):
        return [render_scene(table[p], 32) for p in prompts]

    good = evaluate_t2i(perfect, judge=oracle, languages=LANGS, num_scenes=NUM_SCENES, fid=False, progress=False)
    assert good["judge_real_accuracy"]["all"] == 1.0 and good["mean"]["all"] == 1.0
    bad = evaluate_t2i(grey, judge=oracle, languages=LANGS, num_scenes=NUM_SCENES, fid=False, code_mixed=False,
                       grid_scenes=0, progress=False)
    assert bad["mean"]["all"] < 0.1 and bad["mean"]["colour"] < 0.5
    assert bad["judge_real_accuracy"]["all"] == 1.0
    assert bad["code_mixed"] is None and "_grid" not in bad
    assert bad["cross_lingual_attribute_agreement"] == 1.0  # the same grey image in every language


def test_evaluator_input_errors():
    oracle = OracleJudge([])
    with pytest.raises(ValueError, match="fid=True needs the CLIP vision tower"):
        evaluate_t2i(lambda p, s: [], judge=oracle, num_scenes=4, progress=False)
    with pytest.raises(ValueError, match="unknown languages"):
        evaluate_t2i(lambda p, s: [], judge=oracle, languages=["en", "xx"], fid=False, progress=False)
    with pytest.raises(ValueError, match="returned 1 images for 4 prompts"):
        evaluate_t2i(lambda p, s: [Image.new("RGB", (32, 32))], judge=oracle, languages=["en"], num_scenes=4,
                     fid=False, progress=False)


# ------------------------------------------------------------------ pipeline, grid


class FakePipeline:
    """diffusers-style: one colour per image drawn from its own generator."""

    def __init__(self):
        self.calls = []

    def __call__(self, prompt, negative_prompt, num_inference_steps, guidance_scale, generator, output_type):
        assert output_type == "pil" and len(generator) == len(prompt)
        self.calls.append((list(prompt), negative_prompt, num_inference_steps, guidance_scale))
        images = []
        for text, gen in zip(prompt, generator):
            noise = torch.rand(3, generator=gen)
            shade = tuple(int(255 * v) for v in noise)
            images.append(Image.new("RGB", (8, 8), shade if len(text) % 2 else shade[::-1]))
        return type("Output", (), {"images": images})()


def test_pipeline_generator_image_depends_only_on_prompt_and_seed():
    pipe = FakePipeline()
    generate = pipeline_generator(pipe, num_inference_steps=3, guidance_scale=2.0, batch_size=2, negative_prompt="blurry")
    batch = generate(["a", "bb", "ccc"], [1, 2, 3])
    alone = generate(["ccc"], [3])
    assert batch[2].tobytes() == alone[0].tobytes()
    assert batch[0].tobytes() != generate(["a"], [4])[0].tobytes()
    assert pipe.calls[0] == (["a", "bb"], ["blurry", "blurry"], 3, 2.0) and len(pipe.calls[1][0]) == 1
    with pytest.raises(ValueError, match="one seed per prompt"):
        generate(["a"], [1, 2])


def test_grid_image_layout_and_label_checks():
    images = [[Image.new("RGB", (32, 32), c) for c in ("red", "blue")] for _ in range(3)]
    grid = grid_image(images, ["one", "two", "three"], ["en", "ko"], cell_size=64, label_width=100)
    assert grid.size == (100 + 4 + 2 * 68 + 4, grid.height) and grid.height > 3 * 68
    assert grid.getpixel((100 + 4 + 4 + 10, grid.height - 4 - 10)) == (255, 0, 0)  # NEAREST-enlarged red cell
    with pytest.raises(ValueError, match="2 column labels for 1 columns"):
        grid_image([[images[0][0]]], col_labels=["en", "ko"])


def test_the_six_extra_caption_languages_are_evaluated_without_code_mixed_prompts():
    extra = ["en", "pt", "el", "de"]
    specs = list(sample_scenes(NUM_SCENES, "val", 0))
    oracle = OracleJudge(specs)
    table = {caption(spec, lang): spec for spec in specs for lang in extra}
    table.update({code_mixed_caption(spec, "de"): spec for spec in specs})

    def perfect(prompts, seeds):
        return [render_scene(table[p], 32) for p in prompts]

    report = evaluate_t2i(perfect, judge=oracle, languages=extra, num_scenes=NUM_SCENES, fid=False, grid_scenes=0,
                          progress=False)
    assert set(report["per_language"]) == set(extra) and report["per_language"]["el"]["all"] == 1.0
    assert set(report["code_mixed"]["accuracy"]) == {"de"}  # pt and el have no code-mixed grammar
