"""``prismrec train``, ``evaluate``, ``recommend``, ``compare``, ``runs`` and ``config``."""
from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
from pathlib import Path

from ..config import RESUMABLE_CHANGES, packaged_recipes

#: the groupings of ``compare --by`` (evaluation.compare.GROUPINGS; named here so that the parser is built
#: without importing torch)
COMPARE_GROUPINGS = ("target-count", "history-length")
#: the default grid of ``evaluate --prior-betas`` (evaluation.popularity.DEFAULT_BETAS; named here for the
#: same reason)
DEFAULT_BETAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)

def _config_help() -> str:
    """The key summary of ``train --help``, generated from the config dataclasses so it cannot drift:
    each section's plain keys, nested sections as ``section.sub.*``."""
    import dataclasses
    import textwrap

    from ..config import ExperimentConfig

    def nested(f: dataclasses.Field) -> bool:
        return f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory())

    lines = []
    for section in dataclasses.fields(ExperimentConfig):
        keys = [f"{section.name}.{f.name}" + (".*" if nested(f) else "")
                for f in dataclasses.fields(section.default_factory())]
        lines += textwrap.wrap(", ".join(keys), 100, initial_indent="  ", subsequent_indent="  ",
                               break_on_hyphens=False)
    return ("Configuration: defaults <- --config YAML <- --data/--device flags <- --set overrides.\n"
            "Sections and keys (`prismrec config` prints every key with its default and meaning):\n"
            + "\n".join(lines) + "\nAn unknown key is an error that lists the valid keys.")


def register(sub: argparse._SubParsersAction) -> None:
    register_config(sub)
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("train", help="train a model and report validation/test metrics",
                       description="Train a sequential recommender with early stopping on validation, restore "
                                   "the best epoch, evaluate on test, and save the run. Ctrl-C or SIGTERM stops training early "
                                   "the same way (best epoch restored, tested and saved; stop_reason "
                                   "\"interrupted\"); a second interrupt aborts. After every epoch the run directory's "
                                   "resume/ folder holds what --resume needs to continue the run exactly (e.g. after a "
                                   "time limit, an interrupt or a crash; train.resume_state). A run that ends at train.epochs "
                                   "or train.time_limit_minutes before early stopping has judged it prints a note with "
                                   "the --resume command that continues it.\n\n" + _config_help(),
                       formatter_class=fmt)
    p.add_argument("--config", metavar="FILE.yaml|NAME",
                   help="YAML recipe (lists only what differs from the defaults), or the name of a packaged recipe: "
                        + ", ".join(packaged_recipes()))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (repeatable), e.g. --set train.loss=bce")
    p.add_argument("--data", metavar="PATH", help="sequence file, prepared dataset folder, or benchmark folder "
                   "such as ../shared/data/amazon_beauty (default: the embedded synthetic world)")
    p.add_argument("--output-dir", metavar="DIR", help="run directory (default: runs/<time>-<dataset>-<backbone>-<loss>); "
                   "refused if it already holds a run (config.yaml or summary.json) unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="train into an --output-dir that already holds a run, replacing its results and resume state")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="same as --set train.device=...")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last finished epoch with its saved "
                   "config; --set may change only " + ", ".join(RESUMABLE_CHANGES) + " (e.g. --set "
                   "train.time_limit_minutes=60); not with --config, --output-dir or --overwrite")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="re-evaluate a saved run (reproduces its summary numbers)",
                       description="Rebuild a saved run from its config.yaml and model.safetensors and evaluate "
                                   "it by full ranking.")
    p.add_argument("--run", required=True, metavar="DIR", help="run directory written by `prismrec train`")
    p.add_argument("--split", choices=["valid", "test"], default="test", help="which split (default: test)")
    p.add_argument("--data", metavar="PATH", help="override the dataset path stored in the run's config")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="device (default: the run's train.device)")
    p.add_argument("--export-ranks", metavar="FILE.csv", help="write each user's target rank to a CSV file "
                   "(checked before evaluating: its folder must exist)")
    p.add_argument("--lists", type=int, default=0, metavar="K",
                   help="also describe the top-K recommendation lists (history excluded): catalogue coverage, "
                        "Gini of how often items are listed, and, per group of training count (as compare --by "
                        "target-count), the share of list slots, of targets and of hits; shows whether a model "
                        "recommends rare items as often as they are the next item (default: 0 = off)")
    _add_prior_options(p, "the interactions before the split's targets (the training sequences, and for the test "
                          "split also each user's validation item)",
                       "(the test split is not read to choose it) and then evaluates --split with it")
    p.add_argument("--save-ranks", metavar="DIR",
                   help="with --popularity-prior: write DIR/ranks.npz (each user's valid and test rank under the "
                        "prior) and DIR/summary.json (the beta, where it came from, the metrics), so that "
                        "`prismrec compare --run DIR ...` and benchmarks/breakdown.py read DIR like a run; DIR "
                        "must not hold a run already")
    p.add_argument("--json", action="store_true", help="print metrics as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("recommend", help="top-k items for a given history, or for every user of the dataset",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Recommend the top-k next items with a saved run: for one item history\n"
                                   "(--history), or for every user of the dataset after their whole sequence\n"
                                   "(--all-users; validation and test items included), written as CSV.",
                       epilog="examples:\n  prismrec recommend --run runs/x --history 12,55,873 -k 10\n"
                              "  prismrec recommend --run runs/x --all-users -k 20 --out recs.csv")
    p.add_argument("--run", required=True, metavar="DIR", help="run directory written by `prismrec train`")
    p.add_argument("--all-users", action="store_true",
                   help="recommend for every user of the run's dataset, batched as evaluation is; writes CSV rows "
                        "user_id[,user_raw_id],rank,item[,raw_id],score[,prior] to --out (default: stdout)")
    p.add_argument("--out", metavar="FILE.csv", help="with --all-users: the CSV file to write (its folder must exist)")
    p.add_argument("--history", metavar="ID,ID,...",
                   help="comma-separated item ids, oldest first (ids as in the dataset's sequence file; with "
                        "--raw-ids, the dataset's raw item ids)")
    p.add_argument("--raw-ids", action="store_true", help="--history holds raw item ids (e.g. ASINs or Yelp "
                   "business ids, as in the prepared folder's item_map.tsv or the benchmark folder's datamaps.json) "
                   "instead of item ids")
    p.add_argument("-k", type=int, default=10, help="number of items to return, at least 1 (default: 10)")
    p.add_argument("--include-history", action="store_true", help="allow items of the history to be recommended")
    p.add_argument("--data", metavar="PATH", help="override the dataset path stored in the run's config (e.g. "
                   "when the run was trained from another directory)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="device (default: cpu)")
    _add_prior_options(p, "all the dataset's interactions (training, validation and test items)",
                       "as `evaluate --popularity-prior auto` does (one scoring pass over the validation users) "
                       "and then recommends with it")
    p.add_argument("--json", action="store_true", help="print JSON: a list of items, or with --popularity-prior "
                   "an object with the beta used and the items")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("compare", help="is one run (or group of seeds) better than another? paired tests over users",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Compare finished runs on the same users from the ranks they saved\n"
                                   "(ranks.npz; nothing is re-scored). Each user's metric is averaged over the\n"
                                   "runs of a side (e.g. three seeds), then side A is tested against side B with\n"
                                   "a paired t-test and a Wilcoxon signed-rank test over users (two-sided).\n"
                                   "With --by, the same comparison inside groups of users, to show where A\n"
                                   "gains or loses: by how often the target item occurs in the training\n"
                                   "sequences (target-count: cold vs popular targets) or by the length of the\n"
                                   "history that predicts it (history-length).",
                       epilog="examples:\n  prismrec compare --run runs/prism-s1 --run runs/prism-s2 "
                              "--against runs/sasrec-s1 --against runs/sasrec-s2\n"
                              "  prismrec compare --run runs/prism-s1 --against runs/sasrec-s1 --by target-count")
    p.add_argument("--run", dest="runs", action="append", required=True, metavar="DIR",
                   help="a run of side A; repeat for several seeds")
    p.add_argument("--against", action="append", required=True, metavar="DIR",
                   help="a run of side B (the reference); repeat for several seeds")
    p.add_argument("--split", choices=["valid", "test"], default="test", help="which split (default: test)")
    p.add_argument("--metric", dest="metrics", action="append", metavar="NAME@K",
                   help="HR@K (= Recall@K), NDCG@K or MRR@K; repeat for several (default: NDCG@10 and HR@10)")
    p.add_argument("--by", choices=COMPARE_GROUPINGS, help="also compare inside groups of users: target-count = "
                   "training occurrences of the target item (groups 0-4, 5-9, 10-19, 20-49, 50-99, 100+), "
                   "history-length = items in the history that predicts it (0-4, 5-7, 8-11, 12-19, 20+); needs the "
                   "dataset (read from the config.yaml of the first --run / --against that is a trained run or, for a "
                   "folder written by evaluate --save-ranks, of the run it was derived from; or --data)")
    p.add_argument("--data", metavar="PATH", help="with --by: the dataset the runs were trained on, instead of the "
                   "path in that run's config.yaml (e.g. when the run was trained from another directory)")
    p.add_argument("--json", action="store_true", help="print the tests as JSON")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("runs", help="list the runs under folders: where each stands and its best scores",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Find every run folder at or below each DIR (a folder written by `prismrec\n"
                                   "train`: config.yaml with metrics.jsonl, summary.json or resume/) and print one\n"
                                   "line per run: dataset, model (backbone, + the content fusion when PRISM is on),\n"
                                   "loss, seed, state, epochs finished, mean training seconds per epoch, and the\n"
                                   "best epoch with its validation and test scores. Nothing is loaded but the\n"
                                   "run's small text files.\n\n"
                                   "states: 'done: early stop' / 'done: epoch limit' / 'done: time limit' (ended;\n"
                                   "the last two may still have been improving: `train --resume DIR` continues\n"
                                   "them), 'stopped' (Ctrl-C / SIGTERM; its summary holds the best epoch so far),\n"
                                   "'unfinished' (training now, or cut off; the age of its last epoch tells which),\n"
                                   "'no epoch yet', 'summary.json unreadable' (written after the last epoch but\n"
                                   "not readable since). The test score shows once a summary exists.",
                       epilog="examples:\n  prismrec runs\n  prismrec runs runs/sports_stosa --metric HR@10\n"
                              "  prismrec runs runs/ --json")
    p.add_argument("dirs", nargs="*", default=["runs"], metavar="DIR",
                   help="a run folder or a folder of runs, searched recursively (default: runs)")
    p.add_argument("--metric", metavar="NAME@K", help="the metric shown (HR@K, NDCG@K or MRR@K; default: each "
                   "run's own train.metric, NDCG@10 unless set)")
    p.add_argument("--json", action="store_true", help="print one JSON object per run (a list)")
    p.set_defaults(func=cmd_runs)


def format_table(summary: dict, ks: tuple[int, ...]) -> str:
    names = [f"{m}@{k}" for k in ks for m in ("HR", "NDCG", "MRR")]
    lines = [f"{'split':<6} " + " ".join(f"{n:>9}" for n in names)]
    for split in ("valid", "test"):
        if split in summary:
            lines.append(f"{split:<6} " + " ".join(f"{summary[split][n]:9.4f}" for n in names))
    return "\n".join(lines)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def cmd_train(args: argparse.Namespace) -> int:
    from ..api import (check_run_dir, is_run_config, resume, train, unfinished_training_note,
                       warn_if_config_predates)
    from ..config import ConfigError, build_config

    if args.resume:
        if args.config or args.output_dir or args.overwrite:
            raise ConfigError("--resume continues a saved run with its own config and directory: "
                              "drop --config / --output-dir / --overwrite")
        sets = ([f"data.path={args.data}"] if args.data else []) + \
            ([f"train.device={args.device}"] if args.device else []) + args.overrides
        job = lambda: resume(args.resume, sets, progress=not args.quiet)  # noqa: E731
    else:
        extra: dict = {}
        if args.data:
            extra.setdefault("data", {})["path"] = args.data
        if args.device:
            extra.setdefault("train", {})["device"] = args.device
        cfg = build_config(args.config, args.overrides, extra)
        if args.config and is_run_config(args.config):
            warn_if_config_predates(args.config, cfg, "this run uses these defaults, which may not be what "
                                    "the saved run was trained with")
        if args.output_dir:
            check_run_dir(args.output_dir, overwrite=args.overwrite)
        if cfg.data.path is None and not args.quiet:
            print("data: embedded SYNTHETIC world (planted multimodal structure; not real data)", file=sys.stderr)
        job = lambda: train(cfg, args.output_dir, progress=not args.quiet)  # noqa: E731
    # SIGTERM (e.g. a job scheduler's stop) ends training like Ctrl-C: the best epoch so far is
    # restored, evaluated and saved (summary.json: "stop_reason": "interrupted")
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        run = job()
    finally:
        signal.signal(signal.SIGTERM, previous)
    s = run.summary
    from ..introspect import item_blind_note

    for note in (unfinished_training_note(s, run.run_dir, run.config.train), item_blind_note(run)):
        if note:
            print(note, file=sys.stderr)
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(f"dataset {s['dataset']}  backbone {s['backbone']}  loss {s['loss']}  best epoch {s['best_epoch']}/"
              f"{s['epochs_run']}  {s['seconds_per_epoch']:.2f} s/epoch  eval {s['eval_seconds']:.2f} s")
        print(format_table(s, run.config.eval.ks))
        print(f"run saved to {run.run_dir}")
    return 0


def _add_prior_options(p: argparse.ArgumentParser, counted: str, auto: str) -> None:
    """--popularity-prior, --prior-betas and --prior-metric of ``evaluate`` and ``recommend``: ``counted``
    says which interactions count, ``auto`` what 'auto' does after choosing BETA on the validation split."""
    p.add_argument("--popularity-prior", metavar="BETA|auto",
                   help=f"add BETA * log(1 + c) to every item's score, c = the item's count among {counted} (not "
                        "in the paper; a ranking-time correction for models that under-rank popular items). "
                        f"'auto' chooses BETA on the validation split from --prior-betas {auto} "
                        "(default: off, the model as trained)")
    p.add_argument("--prior-betas", metavar="B,B,...",
                   help="with --popularity-prior auto: the grid of betas to try, numbers >= 0 (default: "
                        + ",".join(f"{b:g}" for b in DEFAULT_BETAS) + ")")
    p.add_argument("--prior-metric", default="NDCG@10", metavar="METRIC",
                   help="with --popularity-prior auto: the validation metric that chooses BETA (default: NDCG@10)")


def _chosen_beta(run, prior: str | float | None, betas: tuple[float, ...], metric: str):
    """(the validation choice or None, the beta to rank with) for --popularity-prior as ``_prior_options``
    returned it: 'auto' chooses from ``betas`` on the validation ``metric``, a number is used as given."""
    choice = run.choose_popularity_beta(betas, metric) if prior == "auto" else None
    return choice, choice.beta if choice is not None else (prior or 0.0)


def _prior_options(args: argparse.Namespace) -> tuple[str | float | None, tuple[float, ...]]:
    """(--popularity-prior as None, 'auto' or a beta; the grid of --prior-betas), checked before any work."""
    from ..config import ConfigError
    from ..evaluation.compare import parse_metric
    from ..evaluation.popularity import check_betas

    prior = args.popularity_prior
    if prior is None:
        used = [o for o, v in (("--prior-betas", args.prior_betas is not None),
                               ("--save-ranks", getattr(args, "save_ranks", None)),
                               ("--prior-metric", args.prior_metric != "NDCG@10")) if v]
        if used:
            raise ConfigError(f"{', '.join(used)} only apply with --popularity-prior")
        return None, DEFAULT_BETAS
    if prior != "auto":
        if args.prior_betas is not None or args.prior_metric != "NDCG@10":
            raise ConfigError("--prior-betas and --prior-metric only apply with --popularity-prior auto")
        try:
            (prior,) = check_betas([prior])
        except ValueError as exc:
            raise ConfigError(f"--popularity-prior {args.popularity_prior!r}: expected 'auto' or a number >= 0 "
                              f"({exc})") from None
    betas = DEFAULT_BETAS if args.prior_betas is None else _parse_betas(args.prior_betas)
    try:
        parse_metric(args.prior_metric)
    except ValueError as exc:
        raise ConfigError(f"--prior-metric: {exc}") from None
    return prior, betas


def _parse_betas(text: str) -> tuple[float, ...]:
    """``--prior-betas B,B,...`` as floats; an empty entry or a bad number is an error naming the option."""
    from ..config import ConfigError
    from ..evaluation.popularity import check_betas

    expected = "expected comma-separated numbers >= 0, e.g. 0,0.5,1"
    parts = text.split(",")
    empty = next((i for i, b in enumerate(parts, start=1) if not b.strip()), None)
    if empty is not None:
        raise ConfigError(f"--prior-betas {text!r}: entry {empty} is empty; {expected}")
    try:
        return check_betas(parts)
    except ValueError as exc:
        raise ConfigError(f"--prior-betas {text!r}: {expected} ({exc})") from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..api import check_output_file, check_run_dir, load_run, save_prior_ranks

    if args.export_ranks:
        check_output_file(args.export_ranks, "--export-ranks", "ranks.csv")
    prior, betas = _prior_options(args)
    if args.save_ranks:
        check_run_dir(args.save_ranks, option="--save-ranks")
    run = load_run(args.run, device=args.device, data_path=args.data)
    choice, beta = _chosen_beta(run, prior, betas, args.prior_metric)
    res = run.evaluate(args.split, top_k=args.lists, popularity_beta=beta)
    if args.save_ranks:
        save_prior_ranks(run, args.save_ranks, beta, choice, {args.split: res})
    lists = None
    if args.lists:
        from ..data.split import train_item_counts
        from ..evaluation.lists import list_stats

        lists = list_stats(res.top_items.numpy(), run.data.split(args.split).targets.cpu().numpy(),
                           train_item_counts(run.dataset.sequences))
    if args.export_ranks:
        users = run.dataset.sequences.user_ids
        with Path(args.export_ranks).open("w") as fh:
            fh.write("user_id,target,rank\n")
            targets = run.data.split(args.split).targets.tolist()
            for u, t, r in zip(users.tolist(), targets, res.ranks.tolist()):
                fh.write(f"{u},{t},{r}\n")
    if args.json:
        out = {"split": args.split, **res.metrics, "eval_seconds": res.seconds}
        if prior is not None:
            out["popularity_prior"] = {"beta": beta, "choice": None if choice is None else choice.to_dict()}
        print(json.dumps(out if lists is None else {**out, "lists": lists.to_dict()}, indent=2))
    else:
        if choice is not None:
            print(f"popularity prior: validation {choice.metric} per beta")
            for b, v in choice.valid.items():
                print(f"  beta {b:<6g} {v:.5f}{'  <- chosen' if b == choice.beta else ''}")
        if prior is not None:
            print(f"{args.split} with beta = {beta:g} * log(1 + count) added to every score:")
        print(format_table({args.split: res.metrics}, run.config.eval.ks))
        print(f"({res.seconds:.2f} s, {len(res.ranks)} users)")
        if args.save_ranks:
            print(f"ranks under the prior saved to {args.save_ranks} (compare --run {args.save_ranks} ...)")
        if lists is not None:
            from ..evaluation.lists import format_list_stats

            print()
            print(format_list_stats(lists))
    return 0


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def cmd_runs(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..runlist import find_runs, run_status

    if args.metric:
        from ..evaluation.compare import parse_metric

        try:
            name, k = parse_metric(args.metric)
        except ValueError as exc:
            raise ConfigError(f"--metric: {exc}") from None
        args.metric = f"{name}@{k}"
    rows = [run_status(d, args.metric) for d in find_runs(args.dirs)]
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return 0
    if not rows:
        print(f"no run folders under {', '.join(args.dirs)}")
        return 0

    def fmt(v: float | None) -> str:
        return "" if v is None else f"{v:.4f}"

    table = [("run", "dataset", "model", "loss", "seed", "state", "epochs", "s/epoch", "best", "valid", "test")]
    for r in rows:
        state = r.state + (f" ({_age(r.last_epoch_age_s)})" if r.state == "unfinished" else "")
        table.append((r.run, r.dataset or "?", r.model or "?", r.loss or "?", "" if r.seed is None else str(r.seed),
                      state, str(r.epochs), "" if r.seconds_per_epoch is None else f"{r.seconds_per_epoch:.1f}",
                      "" if r.best_epoch is None else str(r.best_epoch),
                      fmt(r.best_valid), fmt(r.test)))
    metrics = sorted({r.metric for r in rows})
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) if i < 6 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    print(f"valid / test: {', '.join(metrics)} at the best epoch ({len(rows)} run(s))")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..evaluation.compare import compare_by_group, compare_runs, parse_metric

    metrics = args.metrics or ["NDCG@10", "HR@10"]
    for m in metrics:
        try:
            parse_metric(m)
        except ValueError as exc:
            raise ConfigError(f"--metric: {exc}") from None
    if args.data and not args.by:
        raise ConfigError("--data is only read with --by (the plain comparison needs no dataset)")
    tests = compare_runs(args.runs, args.against, split=args.split, metrics=metrics)
    groups = None
    if args.by:
        from ..api import load_run_dataset

        sequences = load_run_dataset(_dataset_run([*args.runs, *args.against]), args.data).sequences
        groups = compare_by_group(args.runs, args.against, sequences, args.by, split=args.split, metrics=metrics)
    if args.json:
        from .. import __version__
        from ..training.checkpoint import source_revision

        out = {"split": args.split, "a": [str(r) for r in args.runs], "b": [str(r) for r in args.against],
               "tests": [t.to_dict() for t in tests]}
        if groups is not None:
            out |= {"by": args.by, "groups": [g.to_dict() for g in groups]}
        # how this file was made: the command (working directory too, as the run paths may be relative)
        out |= {"command": shlex.join(["prismrec", *args.argv]), "cwd": str(Path.cwd()),
                "prismrec_version": __version__, "source_revision": source_revision()}
        print(json.dumps(out, indent=2))
        return 0
    print(f"A: {len(args.runs)} run(s), B: {len(args.against)} run(s); {args.split} split, "
          f"{tests[0].users:,} users (each user's metric averaged over a side's runs)")
    header = f"{'metric':<9} {'A':>8} {'B':>8} {'A vs B':>8} {'paired t p':>11} {'Wilcoxon p':>11}"
    print(header)
    for t in tests:
        print(_test_row(t))
    if groups is not None:
        what = ("training occurrences of the target item" if args.by == "target-count"
                else "items in the history that predicts the target")
        print(f"\nby {args.by} ({what})")
        print(f"{'group':<8} {'users':>7} {header}")
        for g in groups:
            for t in g.tests:
                print(f"{g.group:<8} {g.users:>7,} {_test_row(t)}")
    return 0


def _dataset_run(dirs: list[str]) -> Path:
    """The run whose config.yaml names the dataset of ``compare --by``: the first of ``dirs`` that is a run,
    or that ``evaluate --save-ranks`` derived from a run (summary.json's ``derived_from``)."""
    from ..data.sequences import DataError

    dirs = list(dict.fromkeys(map(str, dirs)))
    gone = []  # derived_from paths without a run there (e.g. relative to where evaluate was run)
    for d in map(Path, dirs):
        if (d / "config.yaml").is_file():
            return d
        try:
            source = json.loads((d / "summary.json").read_text()).get("derived_from")
        except (OSError, ValueError, AttributeError):  # no summary.json, or not a JSON object
            continue
        if isinstance(source, str) and (Path(source) / "config.yaml").is_file():
            return Path(source)
        if isinstance(source, str):
            gone.append(f"{d / 'summary.json'} names {source}, which holds no config.yaml from here")
    raise DataError(f"--by needs the dataset the runs were trained on, but none of {', '.join(dirs)} is a trained "
                    f"run (config.yaml) or names one in its summary.json (derived_from)"
                    + "".join(f"; {g}" for g in gone) + "; put a trained run on one side")


def _test_row(t) -> str:
    rel = f"{t.relative:+.1%}" if t.relative is not None else "n/a"
    return f"{t.metric:<9} {t.mean_a:>8.4f} {t.mean_b:>8.4f} {rel:>8} {t.t_pvalue:>11.2g} {t.wilcoxon_pvalue:>11.2g}"


def _recommend_all_users(args: argparse.Namespace) -> int:
    import csv

    from ..api import check_k, check_output_file, load_run
    from ..config import ConfigError

    clash = [flag for flag, given in (("--history", args.history is not None), ("--raw-ids", args.raw_ids),
                                      ("--json", args.json)) if given]
    if clash:
        raise ConfigError(f"--all-users writes CSV for every user of the dataset; it takes no {', '.join(clash)}")
    if args.out:
        check_output_file(args.out, "--out", "recs.csv")
    check_k(args.k)
    prior, betas = _prior_options(args)
    run = load_run(args.run, device=args.device or "cpu", data_path=args.data)
    _, beta = _chosen_beta(run, prior, betas, args.prior_metric)
    items, scores = run.recommend_all(args.k, exclude_history=not args.include_history, popularity_beta=beta)
    ds = run.dataset
    users = ds.sequences.user_ids.tolist()
    user_raw, item_raw = ds.extras.get("user_raw_ids"), ds.item_raw_ids
    log_counts = run.popularity_prior("all").tolist() if prior is not None else None
    header = ["user_id"] + (["user_raw_id"] if user_raw else []) + ["rank", "item"] + (["raw_id"] if item_raw else []) \
        + ["score"] + (["prior"] if log_counts is not None else [])
    fh = Path(args.out).open("w", newline="") if args.out else sys.stdout
    try:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(header)
        for row, (u, top, sc) in enumerate(zip(users, items.tolist(), scores.tolist())):  # writing, not scoring
            for rank, (item, score) in enumerate(zip(top, sc), start=1):
                if item == 0:  # fewer items left than -k
                    break
                out.writerow([u] + ([user_raw[row]] if user_raw else []) + [rank, item]
                             + ([item_raw[item - 1]] if item_raw else []) + [f"{score:.6g}"]
                             + ([f"{beta * log_counts[item]:.6g}"] if log_counts is not None else []))
    finally:
        if args.out:
            fh.close()
    if args.out:
        what = f", popularity prior beta {beta:g}" if prior is not None else ""
        print(f"wrote top-{items.shape[1]} items for {len(users):,} users to {args.out}{what}", file=sys.stderr)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from ..api import check_k, load_run
    from ..config import ConfigError
    from ..data.sequences import DataError

    if args.all_users:
        return _recommend_all_users(args)
    if args.out:
        raise ConfigError("--out is only read with --all-users (one history's items are printed)")
    if args.history is None:
        raise ConfigError("give --history ID,ID,... (one history) or --all-users (every user of the dataset)")
    tokens = [x.strip() for x in args.history.split(",") if x.strip()]
    if not args.raw_ids:
        try:
            history = [int(x) for x in tokens]
        except ValueError:
            raise DataError(f"--history must be comma-separated integer item ids (or raw item ids with --raw-ids), "
                            f"got {args.history!r}") from None
    check_k(args.k)
    prior, betas = _prior_options(args)
    run = load_run(args.run, device=args.device or "cpu", data_path=args.data)
    if args.raw_ids:
        history = run.dataset.items_from_raw_ids(tokens)
    choice, beta = _chosen_beta(run, prior, betas, args.prior_metric)
    recs = run.recommend(history, args.k, exclude_history=not args.include_history, popularity_beta=beta)
    ds = run.dataset
    if len(recs) < args.k:  # the catalogue, less the excluded history, is smaller than -k
        excluded = "" if args.include_history else f", less the {len(set(history))} of the history"
        print(f"note: -k {args.k} asked, but only {len(recs)} items can be recommended (a catalogue of "
              f"{ds.num_items} items{excluded})", file=sys.stderr)
    log_counts = run.popularity_prior("all") if prior is not None else None
    rows = []
    for rank, (item, score) in enumerate(recs, start=1):
        row = {"rank": rank, "item": item, "score": round(score, 4)}
        if log_counts is not None:  # the part of the score that the prior added
            row["prior"] = round(beta * float(log_counts[item]), 4)
        if ds.item_raw_ids:
            row["raw_id"] = ds.item_raw_ids[item - 1]
        if ds.item_text:
            row["text"] = ds.item_text[item - 1]
        rows.append(row)
    if args.json:
        out = rows if prior is None else {
            "popularity_prior": {"beta": beta, "choice": None if choice is None else choice.to_dict()}, "items": rows}
        print(json.dumps(out, indent=2))
    else:
        if choice is not None:
            print(f"popularity prior: beta {beta:g} (best validation {choice.metric} of "
                  + ", ".join(f"{b:g}" for b in choice.valid) + ")")
        elif prior is not None:
            print(f"popularity prior: beta {beta:g}")
        for r in rows:
            print("  ".join(f"{k}={v}" for k, v in r.items()))
    return 0


def register_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show every config key with its default and meaning",
                       description="Print the configuration reference, or the resolved config of a recipe.")
    p.add_argument("--config", metavar="FILE.yaml|NAME",
                   help="show this recipe (a file, or a packaged recipe's name: " + ", ".join(packaged_recipes())
                        + ") resolved against the defaults (YAML)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="apply overrides before showing the resolved config")
    p.add_argument("--markdown", action="store_true", help="print the reference as a Markdown table")
    p.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from ..confdoc import markdown, rows
    from ..config import build_config, to_dict

    if args.config or args.overrides:
        print(yaml.safe_dump(to_dict(build_config(args.config, args.overrides)), sort_keys=False), end="")
    elif args.markdown:
        print(markdown(), end="")
    else:
        for key, tname, dflt, doc in rows():
            print(f"{key} = {dflt}    [{tname}]\n    {doc}")
    return 0
