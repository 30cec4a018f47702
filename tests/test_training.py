"""The recipe's pieces (optimizer, schedule, lookahead, augmentation, FLOP count, test-time views,
precision), each on tiny tensors."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim._muon import _zeropower_via_newtonschulz

import classifier.optim
from classifier.batches import scale_down, training_batches
from classifier.device import resolve_precision
from classifier.evaluation import predict_logits
from classifier.models import build_model
from classifier.optim import Lookahead, build_optimizer, build_schedule, newton_schulz_fp32
from classifier.training import epoch_scale, start_run, train_one_epoch, training_flops_per_image


def test_batch_norm_biases_get_their_own_lr_and_decay(params):
    model = build_model(params["model"], 3, 16)
    optimizer = build_optimizer(
        "nesterov",
        {"nesterov": {"lr": 0.5, "momentum": 0.85, "weight_decay": 0.01, "bias_lr_factor": 64}},
        model,
    )
    others, norm_biases = optimizer.param_groups
    assert norm_biases["lr"] == 32 and norm_biases["weight_decay"] == pytest.approx(0.01 / 64)
    assert others["lr"] == 0.5 and others["weight_decay"] == 0.01 and others["nesterov"]
    bn_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert {id(p) for p in norm_biases["params"]} == bn_biases
    frozen = {id(m.weight) for m in model.modules() if isinstance(m, nn.BatchNorm2d)} | {
        id(model.whiten.weight)
    }
    assert not frozen & {id(p) for p in others["params"]}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_muon_orthogonalises_in_the_runs_precision(params, monkeypatch, precision):
    """torch.optim.Muon's own bf16, or fp32 in a run in fp32: a CPU without bf16 instructions
    emulates bf16 matmuls, slowly."""
    calls = []

    def counted(grad, *args):
        calls.append(grad.dtype)
        return newton_schulz_fp32(grad, *args)

    monkeypatch.setattr(classifier.optim, "newton_schulz_fp32", counted)
    model = build_model(params["model"], 3, 16)
    settings = {
        "lr": 0.1,
        "momentum": 0.6,
        "weight_decay": 0.0,
        "others": {"lr": 0.1, "momentum": 0.9},
    }
    optimizer = build_optimizer("muon", {"muon": settings}, model, precision)
    model(torch.randn(8, 3, 16, 16)).logsumexp(1).mean().backward()
    optimizer.step()
    assert calls == ([torch.float32] * len(optimizer.filters) if precision == "fp32" else [])


def test_the_fp32_orthogonalisation_is_torchs_to_bf16_rounding_and_closer_to_exact():
    torch.manual_seed(0)
    grad, args = torch.randn(16, 72), ((3.4445, -4.7750, 2.0315), 5, 1e-7)
    ours, torchs = newton_schulz_fp32(grad, *args), _zeropower_via_newtonschulz(grad, *args)
    a, b, c = args[0]
    exact = grad.double() / grad.double().norm()
    for _ in range(args[1]):
        gram = exact @ exact.T
        exact = a * exact + (b * gram + c * gram @ gram) @ exact
    assert ours.dtype == torch.float32 and (ours - torchs.float()).abs().max() < 0.05
    assert (ours.double() - exact).abs().max() < 1e-5 < (torchs.double() - exact).abs().max()


# the pipeline's: last
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_muon_orthogonalises_the_filters_updates_and_trains_the_rest_with_its_nesterov_settings(
    params, memory_format
):
    model = build_model(params["model"], 3, 16).to(memory_format=memory_format)
    twin = copy.deepcopy(model)
    nesterov = {"lr": 0.5, "momentum": 0.85, "weight_decay": 0.01, "bias_lr_factor": 64}
    settings = {
        "muon": {"lr": 0.1, "momentum": 0.6, "weight_decay": 0.0, "others": nesterov},
        "nesterov": nesterov,
    }
    muon, sgd = (
        build_optimizer("muon", settings, model),
        build_optimizer("nesterov", settings, twin),
    )
    x = torch.randn(8, 3, 16, 16)
    for net in (model, twin):
        torch.manual_seed(0)  # the same dropout in both
        net(x).logsumexp(1).mean().backward()
    filters = {
        f"{name}.weight"
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and m.weight.requires_grad
    }
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    muon.step()
    sgd.step()
    # muon's, nesterov's two
    assert filters and "whiten.weight" not in filters and len(muon.param_groups) == 3
    for (name, p), (_, twin_p) in zip(model.named_parameters(), twin.named_parameters()):
        # scaled to norm sqrt(out channels), then an orthogonalised step: the update's scale
        if name in filters:
            # is the lr's, its spectrum flatter than the gradient's
            matrix = before[name].reshape(len(p), -1)
            held = matrix * len(p) ** 0.5 / matrix.norm()
            update = torch.linalg.svdvals((held - p.detach().reshape_as(matrix)) / 0.1)
            gradient = torch.linalg.svdvals(grads[name].reshape(len(p), -1))
            assert (
                0.5 < update.max() < 1.5
                and (update / update.max()).sum() > (gradient / gradient.max()).sum()
            )
        else:
            assert torch.equal(p, twin_p), name
    restored = build_optimizer("muon", settings, copy.deepcopy(model))
    restored.load_state_dict(muon.state_dict())  # what train.resume does
    buffers = [state["momentum_buffer"] for state in restored.muon.state.values()]
    assert len(buffers) == len(filters) and all(buffer.abs().sum() > 0 for buffer in buffers)
    for (
        group
    ) in restored.param_groups:  # the schedule sets the lr here: the two optimizers must see it
        group["lr"] = 0.5
    assert [group["lr"] for group in restored.muon.param_groups + restored.sgd.param_groups] == [
        0.5
    ] * 3
    muon.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_onecycle_schedule_rises_then_falls_to_the_end_factor():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    train_params = {
        "lr_schedule": "onecycle",
        "warmup_fraction": 0.25,
        "lr_start_factor": 0.2,
        "lr_end_factor": 0.07,
    }
    schedule = build_schedule(optimizer, train_params, total_steps=100)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert (
        rates[0] == pytest.approx(0.2)
        and max(rates) == pytest.approx(1.0)
        and rates.index(1.0) == 25
    )
    assert rates[-1] == pytest.approx(0.07 + 0.93 / 75)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.07)


def test_lookahead_pulls_weights_to_their_average_and_ends_on_it():
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    lookahead = Lookahead(model, every=2, decay=0.5, total_steps=4)
    with torch.no_grad():
        model.weight.fill_(1.0)
    lookahead.step(1)  # not a multiple of every: nothing happens
    assert model.weight.item() == 1.0
    # decay 0.5**2 * (2/4)**3 = 1/32: the average moves 31/32 of the way to the weights
    lookahead.step(2)
    assert model.weight.item() == pytest.approx(31 / 32)
    with torch.no_grad():
        model.weight.fill_(5.0)
    lookahead.finish()
    assert model.weight.item() == pytest.approx(31 / 32)


def test_alternating_flip_mirrors_every_image_in_the_next_epoch():
    images = torch.randint(0, 256, (8, 4, 4, 3), dtype=torch.uint8)
    labels = torch.arange(8)  # the label says which image a batch row is
    train_params = {"batch_size": 8, "flip": "alternating", "translate": 0, "cutout": 0}
    mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    generator = torch.Generator().manual_seed(0)
    flip_bits = torch.rand(8, generator=generator) < 0.5
    plain = images.permute(0, 3, 1, 2).float() / 255
    orientations = []
    for epoch in range(3):
        ((x, y),) = training_batches(
            images,
            labels,
            mean,
            std,
            train_params,
            torch.device("cpu"),
            generator,
            epoch,
            flip_bits,
        )
        mirrored = {int(label): torch.equal(row, plain[label].flip(-1)) for row, label in zip(x, y)}
        assert all(mirrored[i] or torch.equal(row, plain[i]) for i, row in zip(y.tolist(), x))
        orientations.append([mirrored[i] for i in range(8)])
    assert orientations[0] == flip_bits.tolist()
    assert (
        orientations[1] == [not m for m in orientations[0]] and orientations[2] == orientations[0]
    )


def test_scale_down_keeps_a_flat_image_flat_at_the_smaller_size():
    images = torch.full((2, 3, 32, 32), 0.5)
    smaller = scale_down(images, 0.75)
    assert smaller.shape == (2, 3, 24, 24) and smaller.is_contiguous(
        memory_format=torch.channels_last
    )
    assert torch.allclose(smaller, torch.full_like(smaller, 0.5))


def test_low_res_epochs_train_on_smaller_images_and_count_fewer_flops(params):
    params["train"].update(epochs=2, low_res_fraction=0.5, low_res_scale=0.75, batch_size=8)
    rng = np.random.default_rng(0)
    run = start_run(
        params,
        rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8),
        rng.integers(0, 3, 16),
        list("abc"),
    )
    sizes = [
        next(
            training_batches(
                run.images,
                run.labels,
                run.mean,
                run.std,
                params["train"],
                run.device,
                run.generator,
                epoch,
                run.flip_bits,
                epoch_scale(params, epoch),
            )
        )[0].shape[-1]
        for epoch in (0, 1)
    ]
    assert sizes == [12, 16]
    low_res_flops, full_flops = train_one_epoch(run, 0, 1)[2], train_one_epoch(run, 1, 1)[2]
    assert low_res_flops < 0.7 * full_flops  # 0.56 of the pixels
    params["model"]["arch"] = "seed_cnn"  # its dense layer takes one image size: no low-res epochs
    assert epoch_scale(params, 0) == 1


def test_frozen_whitening_bias_saves_the_first_blocks_input_gradient(params):
    model = build_model(params["model"], 3, 16)
    sample = torch.rand(2, 3, 16, 16)
    trained = training_flops_per_image(model, sample)
    model.whiten.bias.requires_grad_(False)
    frozen = training_flops_per_image(model, sample)
    assert 0 < frozen < trained
    assert model.whiten.bias.grad is None  # counted on a copy: the model itself is untouched


def test_six_view_tta_weights_the_unshifted_pair_as_much_as_the_four_shifted_views(params):
    torch.manual_seed(0)
    model = build_model(params["model"], 3, 16).eval()
    images = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)
    mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    args = (model, images, mean, std, torch.device("cpu"), 4, "fp32")
    x = images.permute(0, 3, 1, 2).float() / 255
    padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    with torch.no_grad():
        views = [x, padded[..., :16, :16], padded[..., 2:, 2:]]
        mirrored = [(model(v) + model(v.flip(-1))) / 2 for v in views]
    assert torch.allclose(predict_logits(*args, tta="none"), model(x), atol=1e-5)
    assert torch.allclose(predict_logits(*args, tta="mirror"), mirrored[0], atol=1e-5)
    expected = mirrored[0] / 2 + (mirrored[1] + mirrored[2]) / 4
    assert torch.allclose(predict_logits(*args, tta="mirror_translate"), expected, atol=1e-5)


def test_precision_auto_is_bf16_only_where_the_cpu_computes_it():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
