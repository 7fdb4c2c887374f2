"""CLI end to end on a tiny synthetic world, and the README's promises."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from prismrec.cli import build_parser, main
from prismrec.confdoc import markdown

from conftest import REPO, TINY, sets


def test_train_evaluate_recommend_round_trip(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--output-dir", str(run), *sets(TINY)]) == 0
    out = capsys.readouterr().out
    assert "NDCG@10" in out and "test" in out and "valid" in out
    summary = json.loads((run / "summary.json").read_text())
    assert main(["evaluate", "--run", str(run), "--json", "--export-ranks", str(tmp_path / "r.csv")]) == 0
    ev = json.loads(capsys.readouterr().out)
    for k, v in summary["test"].items():
        assert ev[k] == v  # exact reproduction
    ranks = (tmp_path / "r.csv").read_text().splitlines()
    assert ranks[0] == "user_id,target,rank" and len(ranks) == 1 + 80
    assert main(["recommend", "--run", str(run), "--history", "3,5,7", "-k", "4", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 4 and not {r["item"] for r in recs} & {3, 5, 7}
    # the saved config reproduces the run
    assert main(["train", "--quiet", "--json", "--config", str(run / "config.yaml"),
                 "--output-dir", str(tmp_path / "again")]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test"] == summary["test"]
    # compare reads the saved ranks: a run against its exact reproduction differs in nothing
    assert main(["compare", "--run", str(run), "--against", str(tmp_path / "again"), "--json",
                 "--metric", "NDCG@10", "--metric", "MRR@5"]) == 0
    out = json.loads(capsys.readouterr().out)
    cmp = out["tests"]
    assert out["command"] == (f"prismrec compare --run {run} --against {tmp_path / 'again'} --json "
                              f"--metric NDCG@10 --metric MRR@5")  # the file says how it was made
    assert [t["metric"] for t in cmp] == ["NDCG@10", "MRR@5"]
    assert cmp[0]["mean_a"] == pytest.approx(summary["test"]["NDCG@10"], abs=1e-12)
    assert cmp[1]["mean_b"] == pytest.approx(summary["test"]["MRR@5"], abs=1e-12)
    assert cmp[0]["relative"] == 0 and cmp[0]["t_pvalue"] == 1 and cmp[0]["users"] == 80


def test_train_with_prism_on_synthetic(tmp_path, capsys):
    assert main(["train", "--quiet", "--json", "--output-dir", str(tmp_path / "p"),
                 *sets(TINY + ["model.prism.enabled=true"])]) == 0
    s = json.loads(capsys.readouterr().out)
    assert 0.0 <= s["test"]["NDCG@10"] <= 1.0
    # PRISM trained: its interaction losses were logged, and its experts are in the saved weights
    record = json.loads((tmp_path / "p" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"L_synergy", "L_redundancy"} <= record.keys()
    assert sum(k.startswith("L_unique_") for k in record) == 2  # one unique expert per modality
    from safetensors import safe_open

    with safe_open(str(tmp_path / "p" / "model.safetensors"), "pt") as f:
        assert any(".experts." in k for k in f.keys())


@pytest.mark.parametrize("argv,needle", [
    (["train", "--set", "train.lr_typo=1"], "unknown key(s) train.lr_typo"),
    (["train", "--data", "/nonexistent/path"], "does not exist"),
    (["evaluate", "--run", "/nonexistent/run"], "no config.yaml"),
    (["compare", "--run", "/nonexistent/a", "--against", "/nonexistent/b"], "/nonexistent/a/ranks.npz: not found"),
    (["compare", "--run", "a", "--against", "b", "--metric", "AUC"], "unknown metric 'AUC'"),
    (["compare", "--run", "a", "--against", "b", "--data", "x"], "--data is only read with --by"),
])
def test_errors_are_one_clear_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err


def test_bad_history_is_clear(tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "--quiet", "--output-dir", str(run), *sets(TINY)])
    capsys.readouterr()
    assert main(["recommend", "--run", str(run), "--history", "1,x"]) == 2
    assert "comma-separated integer" in capsys.readouterr().err
    assert main(["recommend", "--run", str(run), "--history", "1,99999"]) == 2
    assert "invalid: [99999]" in capsys.readouterr().err
    # -k beyond the catalogue: every item comes back once, and a note says why there are fewer than -k
    assert main(["recommend", "--run", str(run), "--history", "1,2,2", "-k", "100000", "--include-history",
                 "--json"]) == 0
    out = capsys.readouterr()
    every = [r["item"] for r in json.loads(out.out)]
    assert sorted(every) == list(range(1, len(every) + 1)) and "a catalogue of" in out.err
    assert f"only {len(every)} items" in out.err and "history" not in out.err
    assert main(["recommend", "--run", str(run), "--history", "1,2,2", "-k", "100000", "--json"]) == 0
    out = capsys.readouterr()
    assert len(json.loads(out.out)) == len(every) - 2
    assert f"only {len(every) - 2} items" in out.err and "less the 2 of the history" in out.err
    assert main(["recommend", "--run", str(run), "--history", "1,2,2", "-k", "3", "--json"]) == 0
    assert capsys.readouterr().err == ""


def test_every_option_has_help():
    parser = build_parser()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                stack.extend(action.choices.values())
            elif action.dest not in ("help", "version"):
                assert action.help, f"{p.prog}: option {action.option_strings or action.dest} has no help"


def test_configuration_doc_is_current():
    assert (REPO / "docs" / "configuration.md").read_text() == markdown()


def test_every_config_key_is_documented():
    from prismrec.confdoc import rows
    undocumented = [key for key, _, _, doc in rows() if not doc]
    assert not undocumented, f"config keys without a docstring: {undocumented}"


def test_readme_commands_are_the_ci_commands():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    assert "pip install torch==2.13.0" in blocks[0] and blocks[0].strip().endswith("prismrec train")
    assert blocks[1].strip() == "python -m pytest -q"
    ci = (REPO / ".ci" / "run").read_text()
    assert "python -m pytest -q" in ci and "pip install -q torch==2.13.0" in ci


def test_console_script_help_runs():
    out = subprocess.run([sys.executable, "-m", "prismrec.cli", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "model.prism" in out.stdout


def test_closed_stdout_ends_quietly():
    # the reader is gone before prismrec writes (as `prismrec config | head -1` once head has its line)
    proc = subprocess.Popen([sys.executable, "-m", "prismrec.cli", "config"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == ""  # 128 + SIGPIPE, as a shell reports for a Unix tool; no message


def test_inspect_prints_and_exports(tmp_path, capsys):
    import numpy as np
    run = tmp_path / "p"
    main(["train", "--quiet", "--output-dir", str(run), *sets(TINY + ["model.prism.enabled=true"])])
    capsys.readouterr()
    assert main(["inspect", "--run", str(run), "--json", "--export-weights", str(tmp_path / "w.npz"),
                 "--per-position", "--export-experts", str(tmp_path / "e.npz")]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["fusion_weights"]
    assert [r["expert"] for r in rows] == ["unique_image", "unique_text", "synergy", "redundancy"]
    assert abs(sum(r["mean"] for r in rows) - 1.0) < 1e-5
    content = out["content_variation"]
    assert 0 < content["varying_share"] <= 1 and content["id_rms"] > 0 and content["positions"] > 80
    layer = out["fusion_layer"]
    assert layer["hidden_units"] == 32 and 0 < layer["live_units"] <= 32 and not layer["input_norm"]
    assert list(layer["expert_output_norm"]) == [r["expert"] for r in rows] and layer["id_embedding_norm"] > 0
    w = np.load(tmp_path / "w.npz")
    assert w["weights"].shape == (80, 4) and w["per_position"].shape == (80, 10, 4)
    assert np.allclose(w["per_position"][w["padding_mask"]].sum(-1), 1.0, atol=1e-5)
    assert np.load(tmp_path / "e.npz")["embeddings"].shape == (96, 4, 16)


def test_inspect_reports_the_content_gate(tmp_path, capsys):
    import numpy as np
    for method in ("prism", "concat"):
        run = tmp_path / method
        main(["train", "--quiet", "--output-dir", str(run),
              *sets(TINY + ["model.prism.enabled=true", f"model.prism.method={method}", "model.prism.content_gate=true"])])
        capsys.readouterr()
        w = tmp_path / f"{method}.npz"
        assert main(["inspect", "--run", str(run), "--json", "--export-weights", str(w), "--per-position"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert 0.0 < out["content_gate"]["mean"] < 1.0 and 0.0 <= out["content_gate"]["share_below_0.5"] <= 1.0
        assert ("fusion_weights" in out) == (method == "prism")
        arrays = np.load(w)
        assert arrays["gate"].shape == (80,) and arrays["gate_per_position"].shape == (80, 10)
        assert (arrays["gate_per_position"][~arrays["padding_mask"]] == 0).all()
        assert np.allclose(arrays["gate_per_position"][:, -1], arrays["gate"])
        assert main(["inspect", "--run", str(run)]) == 0
        assert "content gate at each user's most recent position" in capsys.readouterr().out
    assert main(["inspect", "--run", str(tmp_path / "concat"), "--export-experts", str(tmp_path / "e.npz")]) == 2
    assert "no experts" in capsys.readouterr().err


def test_inspect_tsne_writes_map_and_measures(tmp_path, capsys):
    import xml.etree.ElementTree as ET
    run = tmp_path / "p"
    main(["train", "--quiet", "--output-dir", str(run), *sets(TINY + ["model.prism.enabled=true"])])
    capsys.readouterr()
    svg = tmp_path / "map.svg"
    assert main(["inspect", "--run", str(run), "--json", "--tsne", str(svg), "--tsne-items", "30"]) == 0
    m = json.loads(capsys.readouterr().out)["expert_map"]
    assert m["items"] == 30 and m["experts"] == ["unique_image", "unique_text", "synergy", "redundancy"]
    sim = m["similarity"]
    assert all(abs(sim[e][e] - 1.0) < 1e-6 for e in range(4))
    assert all(abs(sim[a][b] - sim[b][a]) < 1e-9 for a in range(4) for b in range(4))
    assert 0.0 <= m["separability"] <= 1.0 and m["chance"] == 0.25
    rows = (tmp_path / "map.csv").read_text().splitlines()
    assert rows[0] == "item,expert,x,y" and len(rows) == 1 + 30 * 4
    assert len({r.split(",")[0] for r in rows[1:]}) == 30  # 30 distinct sampled items, 4 experts each
    root = ET.parse(svg).getroot()
    points = [c for c in root.iter("{http://www.w3.org/2000/svg}circle") if c.get("r") != "5"]
    assert len(points) == 30 * 4
    width, height = float(root.get("width")), float(root.get("height"))
    assert all(0 <= float(c.get("cx")) <= width and 0 <= float(c.get("cy")) <= height for c in points)
    assert main(["inspect", "--run", str(run), "--tsne", str(svg), "--tsne-items", "30"]) == 0
    assert "expert told from its embedding" in capsys.readouterr().out
    assert main(["inspect", "--run", str(run), "--tsne", str(svg), "--tsne-items", "1"]) == 2
    assert "--tsne-items: expected an integer >= 2" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--tsne-items", "0"], "error: --tsne-items: expected an integer >= 2 (items sampled for --tsne), got 0"),
    (["--tsne-perplexity", "0"], "error: --tsne-perplexity: expected a number > 0, got 0"),
])
def test_inspect_tsne_options_are_named_before_loading_the_run(tmp_path, capsys, args, message):
    assert main(["inspect", "--run", str(tmp_path / "missing"), "--tsne", str(tmp_path / "map.svg"), *args]) == 2
    assert capsys.readouterr().err.startswith(message)


@pytest.mark.parametrize("flag, value", [("--tsne-items", "1000"), ("--tsne-perplexity", "30")])
def test_inspect_tsne_options_without_tsne_are_refused(tmp_path, capsys, flag, value):
    # even at their defaults: the option does nothing without a map to draw
    assert main(["inspect", "--run", str(tmp_path / "missing"), flag, value]) == 2
    assert capsys.readouterr().err.startswith(f"error: {flag} sets up the t-SNE map of --tsne FILE.svg; give that too")


def test_inspect_refuses_plain_run(tmp_path, capsys):
    run = tmp_path / "plain"
    main(["train", "--quiet", "--output-dir", str(run), *sets(TINY)])
    capsys.readouterr()
    assert main(["inspect", "--run", str(run)]) == 2
    err = capsys.readouterr().err  # names every kind of run inspect reads
    assert "no multimodal item input" in err and "model.prism.enabled=true" in err and "model.item_bias=true" in err


def test_inspect_naive_fusion_reports_what_it_has_and_names_what_it_lacks(tmp_path, capsys):
    run = tmp_path / "concat"
    main(["train", "--quiet", "--output-dir", str(run),
          *sets(TINY + ["model.prism.enabled=true", "model.prism.method=concat"])])
    capsys.readouterr()
    assert main(["inspect", "--run", str(run), "--json", "--probe"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "fusion_weights" not in out and 0 < out["content_variation"]["varying_share"] <= 1
    assert set(out["probes"]) == {"fused:concat", "input:concat", "id"}  # its fused item embedding, and references
    assert set(out["probes"]["fused:concat"]) == {"unique_image", "unique_text", "redundant", "synergy"}
    for flag, value in (("--export-experts", "e.npz"), ("--tsne", "map.svg")):
        assert main(["inspect", "--run", str(run), flag, str(tmp_path / value)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {flag}: ") and "model.prism.method=concat has no experts" in err


def test_inspect_reports_learned_item_offsets_of_an_id_only_run(tmp_path, capsys):
    import torch

    from prismrec.api import load_run
    from prismrec.data.split import train_item_counts
    from prismrec.introspect import item_bias_summary

    run_dir = tmp_path / "bias"
    main(["train", "--quiet", "--output-dir", str(run_dir), *sets(TINY + ["model.item_bias=true"])])
    capsys.readouterr()
    assert main(["inspect", "--run", str(run_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"item_bias"}  # an ID-only run: no fusion weights to report
    run = load_run(run_dir)
    bias = run.model.item_bias.detach()[1:]
    assert sum(g["items"] for g in out["item_bias"]["groups"]) == run.dataset.num_items
    assert abs(out["item_bias"]["mean"] - float(bias.mean())) < 1e-6 and float(bias.abs().max()) > 0  # trained
    # offsets that are exactly the log count: rank correlation 1, group means increase with the count
    counts = torch.from_numpy(train_item_counts(run.dataset.sequences)).double()
    with torch.no_grad():
        run.model.item_bias.copy_(torch.log1p(counts))
    summary = item_bias_summary(run)
    assert abs(summary["spearman_with_train_count"] - 1.0) < 1e-9
    means = [g["mean"] for g in summary["groups"]]
    assert len(means) >= 2 and means == sorted(means)
    assert main(["inspect", "--run", str(run_dir), "--export-weights", str(tmp_path / "w.npz")]) == 2
    assert "no fusion weights" in capsys.readouterr().err


def test_inspect_probe_planted_and_label_file(tmp_path, capsys):
    run = tmp_path / "p"
    main(["train", "--quiet", "--output-dir", str(run), *sets(TINY + ["model.prism.enabled=true"])])
    capsys.readouterr()
    assert main(["inspect", "--run", str(run), "--probe", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["probes"]) == {"unique_image", "unique_text", "synergy", "redundancy", "input:concat", "id"}
    assert set(out["probes"]["synergy"]) == {"unique_image", "unique_text", "redundant", "synergy"}
    labels = tmp_path / "labels.tsv"
    labels.write_text("".join(f"{i}\t{'odd' if i % 2 else 'even'}\n" for i in range(1, 97)))
    assert main(["inspect", "--run", str(run), "--probe-labels", str(labels)]) == 0
    assert "linear-probe accuracy" in capsys.readouterr().out
    labels.write_text("1\tx\n2 y\n")
    assert main(["inspect", "--run", str(run), "--probe-labels", str(labels)]) == 2
    assert "labels.tsv:2: expected 'item_id<TAB>label'" in capsys.readouterr().err
    labels.write_text("1\tx\n2\ty\n1\ty\n")  # item 1 twice: not silently the last label
    assert main(["inspect", "--run", str(run), "--probe-labels", str(labels)]) == 2
    assert "labels.tsv:3: item 1 already has a label (line 1)" in capsys.readouterr().err


def test_inspect_reports_prediction_layer_weights_for_user_output_fusion(tmp_path, capsys):
    run = tmp_path / "u"
    main(["train", "--quiet", "--output-dir", str(run),
          *sets(TINY + ["model.prism.enabled=true", "model.prism.output_content=true",
                        "model.prism.output_fusion=user", "model.prism.fusion_floor=0.2"])])
    capsys.readouterr()
    assert main(["inspect", "--run", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("fusion_weights", "output_fusion_weights"):
        assert [r["expert"] for r in out[key]] == ["unique_image", "unique_text", "synergy", "redundancy"]
        assert abs(sum(r["mean"] for r in out[key]) - 1.0) < 1e-5
        assert min(r["p25"] for r in out[key]) >= 0.2 / 4 - 1e-6  # the floor: alpha / E for every expert
    assert out["fusion_equal_share"] == pytest.approx(0.2)
    assert main(["inspect", "--run", str(run)]) == 0
    text = capsys.readouterr().out
    assert "prediction-layer fusion weights" in text and "share 0.200 split equally" in text


def test_train_help_lists_every_config_section_key():
    import dataclasses

    from prismrec.cli.run import _config_help
    from prismrec.config import ExperimentConfig

    text = " ".join(_config_help().split())  # unwrap
    for section in dataclasses.fields(ExperimentConfig):
        for f in dataclasses.fields(section.default_factory()):
            assert f"{section.name}.{f.name}" in text
    assert "model.prism.*" in text and "model.stosa.*" in text


def test_inspect_tells_a_dead_fusion_layer(tmp_path, capsys):
    """With every hidden unit of the fusion MLP pushed far below zero (what growing expert outputs did on
    Yelp), the weights are the same for every user and inspect says that no unit is live."""
    import torch
    from prismrec.api import load_run
    from prismrec.introspect import fusion_layer_state, fusion_weights
    run_dir = tmp_path / "p"
    main(["train", "--quiet", "--output-dir", str(run_dir), *sets(TINY + ["model.prism.enabled=true"])])
    run = load_run(run_dir, device="cpu")
    assert fusion_layer_state(run)["live_units"] > 0 and fusion_weights(run).last.std(0).max() > 1e-4
    with torch.no_grad():
        run.model.item_input.fuser.fusion.mlp[0].bias.fill_(-200.0)
    state = fusion_layer_state(run)
    assert state["live_units"] == 0 and state["pre_activation_p1_p50_p99"][2] < -3
    assert fusion_weights(run).last.std(0).max() < 1e-6
    capsys.readouterr()
    main(["inspect", "--run", str(run_dir)])
    assert "hidden units live" in capsys.readouterr().out


def test_expert_agreement_tells_an_expert_that_ignores_its_item(tmp_path):
    """A redundancy expert that outputs one constant vector satisfies its loss (cos(full, view) = 1)
    without reading the item: expert_agreement shows it (1 between items); the others read the item."""
    import torch
    from prismrec.api import load_run
    from prismrec.introspect import expert_agreement
    run_dir = tmp_path / "p"
    main(["train", "--quiet", "--output-dir", str(run_dir), *sets(TINY + ["model.prism.enabled=true"])])
    run = load_run(run_dir, device="cpu")
    trained = expert_agreement(run, num_items=96)
    assert all(a["between_items"] < 0.99 for a in trained.values())
    experts = run.model.item_input.fuser.experts
    with torch.no_grad():
        experts.weights[-1][3].zero_()  # redundancy: its last layer ignores its input
        experts.biases[-1][3].fill_(0.5)
    constant = expert_agreement(run, num_items=96)
    assert constant["redundancy"]["between_items"] == pytest.approx(1.0, abs=1e-5)
    assert constant["redundancy"]["full_vs_view"] == pytest.approx(1.0, abs=1e-5)
    assert constant["synergy"] == pytest.approx(trained["synergy"])  # same seed: the same sample and views
    # the note `train` prints at the end names the item-blind expert only
    from prismrec.introspect import item_blind_note
    note = item_blind_note(run)
    assert note.startswith("note: expert(s) redundancy (1.000) give almost every item the same output")
    assert "synergy" not in note.split(" give ")[0] and f"prismrec inspect --run {run_dir}" in note
    with torch.no_grad():
        experts.weights[-1][3].normal_()  # reads the item again
    assert item_blind_note(run) is None


def test_train_prints_the_item_blind_note_for_prism_runs_only(tmp_path, capsys, monkeypatch):
    import prismrec.introspect
    blind = {"synergy": {"between_items": 0.999, "full_vs_view": -0.998},
             "redundancy": {"between_items": 0.3, "full_vs_view": 0.9}}
    monkeypatch.setattr(prismrec.introspect, "expert_agreement", lambda run: blind)
    assert main(["train", "--quiet", "--output-dir", str(tmp_path / "p"),
                 *sets(TINY + ["model.prism.enabled=true", "train.epochs=1"])]) == 0
    assert "note: expert(s) synergy (0.999) give almost every item the same output" in capsys.readouterr().err
    for arm in (["model.prism.enabled=true", "model.prism.method=concat"], []):  # no experts to be blind
        assert main(["train", "--quiet", "--output-dir", str(tmp_path / f"x{len(arm)}"),
                     *sets(TINY + arm + ["train.epochs=1"])]) == 0
        assert "give almost every item the same output" not in capsys.readouterr().err


def test_content_variation_tells_content_that_is_one_vector_everywhere(tmp_path):
    import torch
    from prismrec.api import load_run
    from prismrec.introspect import content_variation
    run_dir = tmp_path / "p"
    main(["train", "--quiet", "--output-dir", str(run_dir), *sets(TINY + ["model.prism.enabled=true"])])
    run = load_run(run_dir, device="cpu")
    assert content_variation(run)["varying_share"] > 0.01
    experts = run.model.item_input.fuser.experts
    with torch.no_grad():  # every expert outputs the same vector: any fusion weights give that vector
        experts.weights[-1].zero_()
        experts.biases[-1].copy_(torch.linspace(-1, 1, experts.biases[-1].shape[-1]).expand_as(experts.biases[-1]))
    flat = content_variation(run)
    assert flat["varying_share"] < 1e-6 and flat["id_rms"] > 0
