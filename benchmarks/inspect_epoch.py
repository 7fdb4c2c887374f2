"""What has a run learned by its latest finished epoch? The introspection of ``prismrec inspect`` on the
weights a run saves after every epoch for resuming (``resume/model.safetensors``), so a run still
training (or stopped) can be looked at epoch by epoch.

    python benchmarks/inspect_epoch.py --run runs/yelp_stosa/yelp-ce-stosaPrismMeanCenter-s1 --name NAME

Writes benchmarks/results/<NAME>.json (or --results-dir) with the epoch, the fusion MLP's state, the
experts' agreement (between items, full input vs unimodal view), how much the input-side content varies,
and the fusion weights' summary; prints the same.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run directory with resume/model.safetensors (a PRISM run)")
    ap.add_argument("--split", default="test", choices=["valid", "test"], help="whose histories (default test)")
    ap.add_argument("--data", default=None, help="override the dataset path stored in the run's config")
    ap.add_argument("--name", required=True, help="result file name")
    ap.add_argument("--results-dir", default=None, help="where to write the JSON (default benchmarks/results)")
    args = ap.parse_args()
    from prismrec.api import load_run
    from prismrec.introspect import content_variation, expert_agreement, fusion_layer_state, fusion_weights

    run_dir = Path(args.run)
    weights, state = run_dir / "resume" / "model.safetensors", run_dir / "resume" / "state.json"
    if not weights.is_file() or not state.is_file():
        raise SystemExit(f"{run_dir}: no resume/model.safetensors and resume/state.json (is it a prismrec run "
                         "that has finished an epoch?)")
    epoch = json.loads(state.read_text())["epoch"]
    with tempfile.TemporaryDirectory() as tmp:  # a run directory holding the latest epoch's weights
        shutil.copy(run_dir / "config.yaml", tmp)
        shutil.copy(weights, tmp)
        run = load_run(tmp, device="cpu", data_path=args.data)
        out = {"run": str(run_dir), "epoch": epoch, "split": args.split,
               "fusion_weights": fusion_weights(run, args.split).summary(),
               "fusion_layer": fusion_layer_state(run, args.split), "expert_agreement": expert_agreement(run),
               "content_variation": content_variation(run, args.split)}
    print(f"epoch {epoch}: fusion MLP {out['fusion_layer']['live_units']} of {out['fusion_layer']['hidden_units']} "
          f"units live; content varying share {out['content_variation']['varying_share']:.4f} (RMS "
          f"{out['content_variation']['varying_rms']:.3f}, ID RMS {out['content_variation']['id_rms']:.3f})")
    for name, a in out["expert_agreement"].items():
        print(f"  {name:<20} between items {a['between_items']:6.3f}  full vs view {a['full_vs_view']:6.3f}  "
              f"norm {out['fusion_layer']['expert_output_norm'][name]:8.2f}")
    path = write_result(args.name, out, Path(args.results_dir) if args.results_dir else None)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
