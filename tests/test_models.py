import pytest
import torch

from alray.config import ModelConfig
from alray.models import (
    backbone_fingerprint,
    build_model,
    draw_masks,
    head_probs,
    mc_probs,
    predict,
)
from alray.models.tensors import images_to_tensor


def test_mnist_cnn_shapes_and_mc_head():
    m = build_model(ModelConfig(), num_classes=10).eval()
    x = torch.randn(7, 1, 28, 28)
    f = m.features(x)
    assert f.shape == (7, 128)
    probs = head_probs(m, f, draw_masks(m, 20, seed=0))
    assert probs.shape == (7, 20, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(7, 20))
    # T dropout masks really differ (p=0.5), while features stay fixed.
    assert not torch.allclose(probs[:, 0], probs[:, 1])


def test_masks_are_consistent_across_frames_and_batches():
    """One pass's T masks are shared by every frame: a frame's T probabilities do not depend
    on which other frames share its batch, and copies of a frame get identical samples."""
    m = build_model(ModelConfig(), num_classes=10).eval()
    f = m.features(torch.randn(6, 1, 28, 28))
    masks = draw_masks(m, 8, seed=3)
    whole = head_probs(m, f, masks)
    parts = torch.cat([head_probs(m, f[:2], masks), head_probs(m, f[2:], masks)])
    torch.testing.assert_close(whole, parts)
    dup = head_probs(m, torch.cat([f[:1], f[:1]]), masks)
    assert torch.equal(dup[0], dup[1])
    # Consistent masks = mask t applied to every frame's features.
    x = (f[:, None, :] * masks.head[None]) @ m.fc.weight.T + m.fc.bias
    torch.testing.assert_close(whole, torch.softmax(x, -1))


def test_masks_are_seeded_and_leave_the_global_rng_alone():
    m = build_model(ModelConfig(mc_layers="all"), num_classes=10)
    state = torch.random.get_rng_state()
    a, b, c = draw_masks(m, 5, 11), draw_masks(m, 5, 11), draw_masks(m, 5, 12)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.head, b.head)
    assert all(torch.equal(x, y) for x, y in zip(a.sites, b.sites, strict=True))
    assert not torch.equal(a.head, c.head)
    assert [s.shape for s in a.sites] == [(5, 32), (5, 64)] and a.head.shape == (5, 128)
    kept = a.head[a.head > 0]  # inverted dropout: kept units are scaled by 1/(1-p)
    torch.testing.assert_close(kept, torch.full_like(kept, 2.0))
    with pytest.raises(ValueError, match="mc_samples=0"):
        draw_masks(m, 0, 1)


def test_head_without_dropout_is_deterministic_softmax():
    m = build_model(ModelConfig(dropout_p=0.0), num_classes=3).eval()
    f = torch.randn(4, 128)
    probs = head_probs(m, f, draw_masks(m, 5, 0))
    torch.testing.assert_close(probs, torch.softmax(m.fc(f), -1)[:, None].expand(4, 5, 3))


def test_backbone_runs_once_per_frame_with_head_layers():
    m = build_model(ModelConfig(), num_classes=10).eval()
    calls = []
    m.backbone.register_forward_hook(lambda *a: calls.append(1))
    predict(m, torch.randn(3, 1, 28, 28), draw_masks(m, 50, 0))
    assert len(calls) == 1


def test_mc_layers_all_drops_inside_the_backbone_consistently():
    """``all``: BatchBALD's CNN, dropout after both conv blocks and at fc1; the whole model
    runs T times, each sample's masks shared by every frame."""
    cfg = ModelConfig(mc_layers="all")
    m = build_model(cfg, num_classes=10).eval()
    x = torch.randn(5, 1, 28, 28)
    masks = draw_masks(m, 6, seed=1)
    calls = []
    hook = m.backbone.register_forward_hook(lambda *a: calls.append(1))
    feats, probs = predict(m, x, masks)
    hook.remove()
    assert len(calls) == 1 + 6 and probs.shape == (5, 6, 10)  # features once, then T passes
    torch.testing.assert_close(feats, m.features(x))
    torch.testing.assert_close(probs, torch.cat([mc_probs(m, x[:2], masks),
                                                 mc_probs(m, x[2:], masks)]))
    # Sample t by hand: channel masks after conv1 and conv2 (before pooling), fc1 mask.
    import torch.nn.functional as F

    b, t = m.backbone, 4
    h = F.relu(F.max_pool2d(b.conv1(x) * masks.sites[0][t][None, :, None, None], 2))
    h = F.relu(F.max_pool2d(b.conv2(h) * masks.sites[1][t][None, :, None, None], 2))
    f = F.relu(b.fc1(h.flatten(1))) * masks.head[t]
    torch.testing.assert_close(probs[:, t], torch.softmax(m.fc(f), -1))
    # The conv masks matter: 'head' with the same head masks gives other probabilities.
    head_only = head_probs(m, feats, masks)
    assert not torch.allclose(probs, head_only)
    # Training draws fresh channel dropout inside the backbone too.
    m.train()
    torch.manual_seed(0)
    assert not torch.allclose(m(x), m(x))
    m.eval()
    torch.testing.assert_close(m(x), m(x))


def test_mc_layers_all_needs_dropout_sites():
    with pytest.raises(ValueError, match="model.mc_layers='all'.*resnet18"):
        build_model(ModelConfig(architecture="resnet18", input_size=32, in_channels=3,
                                mc_layers="all"), 4)
    with pytest.raises(ValueError, match="mc_layers"):
        ModelConfig(mc_layers="conv")


def test_torchvision_backbone_by_name_random_init():
    cfg = ModelConfig(architecture="resnet18", input_size=32, in_channels=3)
    m = build_model(cfg, num_classes=4).eval()
    assert m.feature_dim == 512
    assert predict(m, torch.randn(2, 3, 32, 32), draw_masks(m, 3, 0))[1].shape == (2, 3, 4)


def test_frozen_backbone_stays_in_eval_mode_through_an_epoch(tmp_path):
    """``freeze_backbone``: training one epoch moves neither batch-norm running statistics
    nor the backbone fingerprint (the embedding cache's key), while the head learns."""
    from alray.config import TrainConfig
    from alray.pipeline.train import _fit

    cfg = ModelConfig(architecture="resnet18", input_size=32, in_channels=3, num_classes=3)
    torch.manual_seed(0)
    torch.save(build_model(cfg, 3).backbone.state_dict(), tmp_path / "w.pt")
    frozen = cfg.model_copy(update={"weights_uri": str(tmp_path / "w.pt"),
                                    "freeze_backbone": True})
    before = build_model(frozen, 3)
    stats = {k: v.clone() for k, v in before.backbone.state_dict().items() if "running" in k}
    assert stats and before.train().backbone.training is False
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(48, 3, 32, 32, generator=g) * 3 + 1, torch.randint(0, 3, (48,), generator=g)
    data = {"x_train": x, "y_train": y, "x_val": x[:16], "y_val": y[:16], "x_test": x[:16],
            "y_test": y[:16]}
    tcfg = TrainConfig(max_epochs=1, epoch_samples=48, batch_size=16, patience=1)
    config = {"data": data, "train_cfg": tcfg, "model_cfg": frozen, "num_classes": 3,
              "seed": 0, "init_state": None}
    metrics, state = _fit(config)
    after = build_model(frozen, 3)
    after.load_state_dict(state)
    for k, v in stats.items():
        torch.testing.assert_close(after.backbone.state_dict()[k], v, rtol=0, atol=0)
    assert backbone_fingerprint(after) == backbone_fingerprint(before)
    assert not torch.equal(after.fc.weight, before.fc.weight) and metrics["steps"] == 3
    # A trainable backbone's batch-norm statistics do move (the check above can fail).
    moving = {**config, "model_cfg": cfg.model_copy(update={"weights_uri": str(tmp_path / "w.pt")})}
    _, state2 = _fit(moving)
    assert any(not torch.equal(state2[f"backbone.{k}"], v) for k, v in stats.items())


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

    m = build_model(ModelConfig(), num_classes=10).eval()
    n = 2 * CPU_CHUNK + 5  # two full chunks and a ragged one
    raw = np.random.default_rng(0).integers(0, 255, (n, 28, 28, 1), dtype=np.uint8)
    images = pa.array([r.tobytes() for r in raw], pa.binary())
    masks = draw_masks(m, 4, 0)
    with torch.no_grad():
        feats, probs = embed_images(m, images, (28, 28, 1), masks, "cpu")
        whole = m.features(images_to_tensor(images, 28, 28, 1))
        assert embed_images(m, images, (28, 28, 1), None, "cpu")[1] is None
    torch.testing.assert_close(feats, whole)
    assert probs.shape == (n, 4, 10)
    torch.testing.assert_close(probs, head_probs(m, whole, masks))
