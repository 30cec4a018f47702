import torch

from classifier.models import (
    FastCNN,
    SeedCNN,
    build_model,
    init_whitening,
    load_checkpoint,
    save_checkpoint,
)


def test_both_architectures_give_one_logit_per_class(params):
    for arch in ("fast_cnn", "seed_cnn"):
        model = build_model({**params["model"], "arch": arch}, num_classes=7, image_size=32)
        assert model(torch.rand(5, 3, 32, 32)).shape == (5, 7)
    assert isinstance(build_model(params["model"], 3, 16), FastCNN)
    assert isinstance(build_model({**params["model"], "arch": "seed_cnn"}, 3, 16), SeedCNN)


def test_models_are_made_of_the_required_layers(params):
    for arch in ("fast_cnn", "seed_cnn"):
        layer_types = {
            type(m) for m in build_model({**params["model"], "arch": arch}, 3, 32).modules()
        }
        assert {torch.nn.Conv2d, torch.nn.ReLU, torch.nn.Dropout, torch.nn.Linear} <= layer_types
        assert layer_types & {torch.nn.MaxPool2d, torch.nn.AdaptiveMaxPool2d}


def test_whitening_decorrelates_patches():
    mixing = torch.tensor([[1.0, 0.9, 0.8], [0.0, 0.4, 0.3], [0.0, 0.0, 0.2]])
    images = torch.einsum("ij,njhw->nihw", mixing, torch.randn(200, 3, 16, 16))
    # neighbouring pixels correlate, as in photos
    images = torch.nn.functional.avg_pool2d(images, 3, 1, 1)
    layer = torch.nn.Conv2d(3, 24, 2)
    init_whitening(layer, images, eps=0)
    out = layer(images)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = torch.cov(out.T)
    assert torch.allclose(covariance, torch.eye(12), atol=0.05)
    assert torch.equal(layer.weight[12:], -layer.weight[:12])


def test_checkpoint_rebuilds_the_same_model(tmp_path, params):
    model = build_model(params["model"], 3, 16).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, params["model"], ["a", "b", "c"], [0.5] * 3, [0.25] * 3, 16)
    loaded, checkpoint = load_checkpoint(path)
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(loaded.eval()(x), model(x))
    assert checkpoint["class_names"] == ["a", "b", "c"] and checkpoint["mean"] == [0.5] * 3


def test_fast_cnn_recipe_settings_take_effect(params):
    model = build_model(params["model"], 3, 16)
    for conv in (
        m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    ):
        x = torch.rand(1, conv.in_channels, 5, 5)
        # dirac init: the first filters pass their input through
        passed = min(conv.in_channels, conv.out_channels)
        assert torch.allclose(conv(x)[:, :passed], x[:, :passed], atol=1e-6)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(
        not n.weight.requires_grad and n.bias.requires_grad and n.momentum == 0.4 for n in norms
    )
    assert not model.whiten.weight.requires_grad
    unscaled = build_model(
        {**params["model"], "fast_cnn": {**params["model"]["fast_cnn"], "output_scale": 1.0}}, 3, 16
    )
    unscaled.load_state_dict(model.state_dict())
    images = torch.rand(2, 3, 16, 16)
    assert torch.allclose(model.eval()(images), unscaled.eval()(images) * 0.1111, atol=1e-6)
