import pytest
import torch

from alray.config import ModelConfig
from alray.models import build_model
from alray.models.tensors import images_to_tensor


def test_mnist_cnn_shapes_and_mc_head():
    m = build_model(ModelConfig(), num_classes=10).eval()
    x = torch.randn(7, 1, 28, 28)
    f = m.features(x)
    assert f.shape == (7, 128)
    probs = m.head(f, 20)
    assert probs.shape == (7, 20, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(7, 20))
    # T dropout masks really differ (p=0.5), while features stay fixed.
    assert not torch.allclose(probs[:, 0], probs[:, 1])


def test_head_without_dropout_is_deterministic_softmax():
    m = build_model(ModelConfig(dropout_p=0.0), num_classes=3).eval()
    f = torch.randn(4, 128)
    probs = m.head(f, 5)
    torch.testing.assert_close(probs, torch.softmax(m.fc(f), -1)[:, None].expand(4, 5, 3))


def test_backbone_runs_once_per_frame():
    m = build_model(ModelConfig(), num_classes=10).eval()
    calls = []
    m.backbone.register_forward_hook(lambda *a: calls.append(1))
    m.head(m.features(torch.randn(3, 1, 28, 28)), 50)
    assert len(calls) == 1


def test_torchvision_backbone_by_name_random_init():
    cfg = ModelConfig(architecture="resnet18", input_size=32, in_channels=3)
    m = build_model(cfg, num_classes=4).eval()
    assert m.feature_dim == 512
    assert m.head(m.features(torch.randn(2, 3, 32, 32)), 3).shape == (2, 3, 4)


def test_weights_uri_loads_backbone(tmp_path):
    cfg = ModelConfig()
    src = build_model(cfg, 10)
    torch.save(src.backbone.state_dict(), tmp_path / "w.pt")
    dst = build_model(cfg.model_copy(update={"weights_uri": str(tmp_path / "w.pt"),
                                             "freeze_backbone": True}), 10)
    torch.testing.assert_close(dst.backbone.conv1.weight, src.backbone.conv1.weight)
    assert not any(p.requires_grad for p in dst.backbone.parameters())


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="model.architecture='nope'"):
        build_model(ModelConfig(architecture="nope"), 10)


def test_images_to_tensor_checks_sizes():
    imgs = [bytes([0] * 4), bytes([255] * 4)]
    x = images_to_tensor(imgs, 2, 2, 1)
    assert x.shape == (2, 1, 2, 2) and x.min() == -1 and x.max() == 1
    with pytest.raises(ValueError, match="expected 2x3x2x1"):
        images_to_tensor(imgs, 3, 2, 1)


def test_embed_images_in_cpu_chunks_equals_one_batch():
    import numpy as np
    import pyarrow as pa

    from alray.pipeline.embed_actor import CPU_CHUNK, embed_images

    m = build_model(ModelConfig(dropout_p=0.0), num_classes=10).eval()
    n = 2 * CPU_CHUNK + 5  # two full chunks and a ragged one
    raw = np.random.default_rng(0).integers(0, 255, (n, 28, 28, 1), dtype=np.uint8)
    images = pa.array([r.tobytes() for r in raw], pa.binary())
    with torch.no_grad():
        feats, probs = embed_images(m, images, (28, 28, 1), 4, "cpu")
        whole = m.features(images_to_tensor(images, 28, 28, 1))
        assert embed_images(m, images, (28, 28, 1), None, "cpu")[1] is None
    torch.testing.assert_close(feats, whole)
    assert probs.shape == (n, 4, 10)
    torch.testing.assert_close(probs[:, 0], torch.softmax(m.fc(whole), -1))
