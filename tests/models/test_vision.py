import pytest
import torch
from open_clip.transformer import VisionTransformer

from babeltower.models.vision import VisionConfig, VisionTower, vit_b32, vit_tiny


def test_shapes_and_backward():
    tower = VisionTower(vit_tiny(output_dim=24))
    x = torch.randn(3, 3, 32, 32)
    out = tower(x)
    assert out.shape == (3, 24)
    out.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters() if p.requires_grad)


def test_state_dict_is_open_clips_and_outputs_match():
    """Our tower keeps open_clip's keys, so its weights load into open_clip's own tower and agree."""
    torch.manual_seed(0)
    config = vit_tiny()
    ours = VisionTower(config).eval()
    ref = VisionTransformer(
        image_size=32, patch_size=8, width=32, layers=2, heads=2, mlp_ratio=4.0, output_dim=32
    ).eval()
    ref.load_state_dict(ours.vit.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_sdpa_equals_math_backend():
    torch.manual_seed(0)
    a = VisionTower(vit_tiny(attn_backend="sdpa")).eval()
    b = VisionTower(vit_tiny(attn_backend="math")).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_same_gradients():
    torch.manual_seed(0)
    a = VisionTower(vit_tiny())
    b = VisionTower(vit_tiny(gradient_checkpointing=True))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    a(x).sum().backward()
    b(x).sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="patch_size"):
        VisionConfig(image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="heads"):
        VisionConfig(width=30, heads=4)
    with pytest.raises(ValueError, match="attn_backend"):
        VisionConfig(attn_backend="flash")


def test_vit_b32_size():
    config = vit_b32()
    assert (config.image_size, config.patch_size, config.width, config.layers) == (224, 32, 768, 12)
