"""The conformance contract on a CUDA device: the same models give the same scores and rankings on
the GPU as on the CPU, train there, and a run trained there loads and evaluates on a CPU-only machine.

Skipped where no CUDA device is present (CI and the project's own machine); run on the lent GPU
machine with ``pytest tests/test_cuda.py`` (benchmarks/device/gpu_cost.sh does).
"""
from __future__ import annotations

import json

import pytest
import torch

from prismrec.cli import main
from prismrec.evaluation import evaluate
from prismrec.models import registered_backbones
from test_conformance import (ARMS, TINY_MODEL, check_training_steps_lower_the_loss, item_seq, make,
                              tiny_data)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
CASES = [(b, a) for b in registered_backbones() for a in ARMS
         if not (b == "stosa" and a in ("prism-user-output", "prism-item-bias"))]


@pytest.fixture(autouse=True)
def full_fp32_matmuls():
    """TF32 would round the GPU's matrix products to 10 mantissa bits: compare float32 with float32."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p[0]}-{p[1]}")
def test_scores_and_ranks_match_the_cpu(case):
    cpu = make(*case)
    gpu = make(*case).to(CUDA)  # same seed: same weights
    seq = item_seq()
    with torch.no_grad():
        torch.testing.assert_close(gpu(seq.to(CUDA)).cpu(), cpu(seq), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(gpu.full_sort_scores(seq.to(CUDA)).cpu(), cpu.full_sort_scores(seq),
                                   rtol=1e-4, atol=1e-4)
        split = tiny_data().test
        on_cpu = evaluate(cpu.full_sort_scores, split, ks=(5, 10), batch_size=5)
        on_gpu = evaluate(gpu.full_sort_scores, split, ks=(5, 10), batch_size=5, device=CUDA)
    # ranks may differ only where two items' scores are within float rounding of each other
    scores = cpu.full_sort_scores(split.inputs).detach()
    target = scores.gather(1, split.targets[:, None])
    near_tie = ((scores - target).abs() < 1e-4).sum(1) > 1
    assert torch.equal(on_gpu.ranks[~near_tie], on_cpu.ranks[~near_tie])
    assert on_gpu.ranks.device.type == "cpu"


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p[0]}-{p[1]}")
def test_training_steps_on_the_gpu_lower_the_loss(case):
    check_training_steps_lower_the_loss(make(*case).to(CUDA), CUDA)


@pytest.mark.parametrize("backbone", registered_backbones())
def test_a_run_trained_on_the_gpu_evaluates_on_the_cpu(backbone, tmp_path, capsys):
    """`prismrec train --device cuda`, then `prismrec evaluate --device cpu` on the saved run: the
    checkpoint holds no device-bound state and the CPU reproduces the GPU's test metrics."""
    from conftest import TINY

    tiny = [s for s in TINY if not s.startswith("train.device=")]  # a --set would override --device
    sets = [a for item in tiny + ["train.epochs=2", f"model.backbone={backbone}", "model.prism.enabled=true",
                                  *TINY_MODEL[4:]] for a in ("--set", item)]
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--json", "--device", "cuda", "--output-dir", str(run), *sets]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--run", str(run), "--device", "cpu", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["split"] == "test" and trained["device"].startswith("cuda")
    for k, v in trained["test"].items():
        assert again[k] == pytest.approx(v, abs=2e-3), k
