"""What InDiRec's generated intent-aware views carry: do they depend on the guidance, and does the
start of the reverse chain matter?

    python benchmarks/diffusion_views.py --run runs/<indirec run> [--weights resume/best.safetensors] \
        [--prefixes 4096] [--threads 1] [--seed 0] [--name diffusion_views_<name>]

Loads a trained InDiRec run (its config.yaml and the given safetensors weights, default the run's
``model.safetensors``), clusters every training prefix into intents as training does at the start of an
epoch, draws ``--prefixes`` training prefixes, and generates each one's view as training does
(``sample_steps`` respaced DDPM steps, guidance weight w) under several guidances and starts:

* ``partner``: the guidance training uses (another prefix of the same intent), start from pure noise;
* ``shuffled``: the representation of a random prefix of any intent;
* ``null``: the learned null guidance;
* ``partner, start ~ q(x_T | x_0)``: the chain starts from what the denoiser saw at t = T - 1 in
  training (it uses the target x_0, so it is a diagnostic, not a usable view).

For each it reports: the cosine of the view with the prefix's target x_0 (the normalised target
embedding the diffusion is trained to generate), the target's rank among all items by that cosine
(HR@10, MRR), and the InfoNCE retrieval accuracy of the contrastive term: how often a prefix's own
view is the nearest (cosine) of ``--cl-group`` views to the prefix's representation. Also the
schedule's alpha-bar at the last step. Writes benchmarks/results/<name>.json (or ``--results-dir``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402


def view_stats(views: torch.Tensor, x0: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
               reps: torch.Tensor, group: int) -> dict:
    """views, x0, reps (P, D); items (N, D) every real item's normalised embedding; targets (P,) rows."""
    v = F.normalize(views, dim=-1)
    cos = (v * F.normalize(x0, dim=-1)).sum(-1)  # (P,)
    sims = v @ F.normalize(items, dim=-1).T  # (P, N)
    target_sim = sims.gather(1, targets[:, None])  # (P, 1)
    rank = (sims > target_sim).sum(1) + 1  # (P,) pessimistic ties aside (continuous scores)
    P = len(views) // group * group
    a = F.normalize(reps[:P], dim=-1).reshape(-1, group, reps.shape[-1])
    b = v[:P].reshape(-1, group, v.shape[-1])
    nearest = torch.einsum("gid,gjd->gij", a, b).argmax(-1)  # (G, group)
    retrieval = (nearest == torch.arange(group)).float().mean()
    return {"cos_to_target": float(cos.mean()), "HR@10": float((rank <= 10).float().mean()),
            "MRR": float((1.0 / rank.float()).mean()), "cl_retrieval_accuracy": float(retrieval),
            "view_norm": float(views.norm(dim=-1).mean())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a trained InDiRec run directory (holds config.yaml)")
    ap.add_argument("--weights", default="model.safetensors",
                    help="safetensors file of the weights, relative to --run (default model.safetensors; "
                         "resume/best.safetensors for a run still training)")
    ap.add_argument("--prefixes", type=int, default=4096, help="training prefixes to generate views for")
    ap.add_argument("--cl-group", type=int, default=256,
                    help="group size of the retrieval accuracy (training's cl_max_samples: 256)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0, help="seed of the prefix draw and of the sampling noise")
    ap.add_argument("--name", default="diffusion_views", help="result file name (without .json)")
    ap.add_argument("--results-dir", default=str(RESULTS), help="folder of the result file (default benchmarks/results)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from safetensors.torch import load_model

    from prismrec.api import build
    from prismrec.config import build_config
    from prismrec.data.sequences import PAD_ID

    run_dir = Path(args.run)
    cfg = build_config(run_dir / "config.yaml", overrides=["train.device=cpu"])
    if cfg.model.backbone != "indirec":
        ap.error(f"{run_dir} is a {cfg.model.backbone} run; this script reads InDiRec's diffusion")
    run = build(cfg)
    model = run.model
    load_model(model, str(run_dir / args.weights), strict=True)
    model.eval()
    ind = cfg.model.indirec
    with torch.no_grad():
        model.on_epoch_start(1, run.data, torch.device("cpu"))  # intents of every training prefix
        state = model.intents
        targets_all = run.data.train_targets[run.data.train_targets != PAD_ID]  # (Np,) prefix order
        g = torch.Generator().manual_seed(args.seed)
        pick = torch.randperm(len(targets_all), generator=g)[:args.prefixes]  # (P,)
        targets = targets_all[pick]
        table = model.item_input.output_embeddings()  # (N + 1, D)
        D = table.shape[-1]
        x0 = F.normalize(table[targets], dim=-1) * D ** 0.5  # as in training
        items = table[1:]
        reps = state.bank[pick]  # (P, D) the prefixes' representations
        torch.manual_seed(args.seed)
        partner = state.bank[state.partners(pick)]
        shuffled = state.bank[torch.randint(0, len(state.bank), (len(pick),), generator=g)]
        null = model.diffusion.null_guidance.expand(len(pick), -1)
        diff = model.diffusion
        T = diff.steps
        ab_T = float(diff.alphas_cumprod[-1])
        q_start = ab_T ** 0.5 * x0 + (1 - ab_T) ** 0.5 * torch.randn(x0.shape, generator=g)
        arms = {"partner": (partner, None), "shuffled": (shuffled, None), "null": (null, None),
                "partner, start ~ q(x_T | x_0)": (partner, q_start)}
        results = {}
        for name, (guidance, start) in arms.items():
            torch.manual_seed(args.seed + 1)  # the same sampling noise for every arm
            views = diff.sample(guidance, ind.sample_steps, ind.guidance_weight, x_T=start)
            results[name] = view_stats(views, x0, items, targets - 1, reps, args.cl_group)
        results["prefix representation itself"] = view_stats(reps, x0, items, targets - 1, reps, args.cl_group)
    out = {"run": str(run_dir), "weights": args.weights, "prefixes": len(pick), "diffusion_steps": T,
           "sample_steps": ind.sample_steps, "guidance_weight": ind.guidance_weight, "beta_start": ind.beta_start,
           "beta_end": ind.beta_end, "alpha_bar_T": ab_T, "intents": int(len(state.counts)), "results": results}
    print(f"alpha-bar_T = {ab_T:.3f} (T = {T}, beta {ind.beta_start:g} -> {ind.beta_end:g}); "
          f"{len(pick)} prefixes, {len(state.counts)} intents")
    print("| view | cos to target x0 | HR@10 of target | MRR | CL retrieval acc. | mean norm |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['cos_to_target']:.3f} | {r['HR@10']:.4f} | {r['MRR']:.4f} | "
              f"{r['cl_retrieval_accuracy']:.3f} | {r['view_norm']:.2f} |")
    print(f"results: {write_result(args.name, out, Path(args.results_dir))}")


if __name__ == "__main__":
    main()
