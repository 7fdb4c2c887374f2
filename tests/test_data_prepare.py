"""Benchmark folders, the prepared format, feature refusal, and the `data` CLI commands."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from prismrec.cli import main
from prismrec.data import DataError, load_dataset
from prismrec.data.attributes import ItemAttributes
from prismrec.data.dataset import FeatureMatrix, item_map_fingerprint
from prismrec.data.folders import prepare_from_folder
from prismrec.data.prepared import available_features, read_prepared, write_feature, write_prepared

from conftest import TINY, sets


def run_cli(argv, capsys=None):
    """The real ``prismrec`` entry point (errors go to stderr with exit code 2)."""
    return main(argv)


@pytest.fixture
def bench(tmp_path):
    """A tiny benchmark folder in the ../shared/data layout (3 users, 4 items)."""
    d = tmp_path / "tiny_bench"
    (d / "derived").mkdir(parents=True)
    (d / "Tiny.txt").write_text("1 1 2 3\n2 2 4 1 3\n3 4 3 2\n")
    (d / "datamaps.json").write_text(json.dumps({
        "user2id": {"uA": "1", "uB": "2", "uC": "3"}, "id2user": {"1": "uA", "2": "uB", "3": "uC"},
        "item2id": {"X1": "1", "X2": "2", "X3": "3", "X4": "4"},
        "id2item": {"1": "X1", "2": "X2", "3": "X3", "4": "X4"},
        "attribute2id": {}, "id2attribute": {}}))
    (d / "Tiny_item2attributes.json").write_text(json.dumps({"1": [1, 2], "2": [2], "3": [], "4": [3, 1]}))
    (d / "item_generative_indexing_phase_0.txt").write_text("X1 red polish\nX2 blue polish\nX3 \nX4 hair cream\n")
    (d / "derived" / "item_meta.tsv").write_text(
        "item_id\tasin\tshort_text_idgenrec\tattributes_s3rec\n"
        "1\tX1\tred polish\tOPI | Nails\n2\tX2\tblue polish\tNails\n3\tX3\t\t\n4\tX4\thair cream\tDove | OPI\n")
    return d


def test_benchmark_folder_reads_text_attributes_raw_ids(bench):
    ds = load_dataset(bench)
    assert ds.num_users == 3 and ds.num_items == 4
    assert ds.item_raw_ids == ["X1", "X2", "X3", "X4"]
    assert ds.extras["user_raw_ids"] == ["uA", "uB", "uC"]
    assert ds.item_text == ["red polish", "blue polish", "", "hair cream"]
    attrs = ds.extras["item_attributes"]
    assert attrs.named and attrs[1] == ["OPI", "Nails"] and attrs[3] == [] and attrs[4] == ["Dove", "OPI"]
    mh = attrs.multi_hot().toarray()
    assert mh.shape == (5, 3) and mh[0].sum() == 0 and mh[4].sum() == 2


def test_unnamed_attributes_stay_anonymous(bench):
    tsv = bench / "derived" / "item_meta.tsv"
    tsv.write_text(tsv.read_text().replace("attributes_s3rec", "attribute_ids_s3rec_unnamed"))
    attrs = load_dataset(bench).extras["item_attributes"]
    assert not attrs.named and attrs[1] == ["attr_1", "attr_2"]


def test_prepare_folder_round_trip(bench, tmp_path):
    out = prepare_from_folder(bench, tmp_path / "prep")
    meta = json.loads((out / "dataset.json").read_text())
    assert (meta["num_users"], meta["num_items"], meta["num_interactions"]) == (3, 4, 10)
    assert meta["item_map_fingerprint"] == item_map_fingerprint(4, ["X1", "X2", "X3", "X4"])
    assert (out / "sequences.txt").read_text() == (bench / "Tiny.txt").read_text()
    assert (out / "item_map.tsv").read_text().splitlines()[1] == "1\tX1"
    src, ds = load_dataset(bench), load_dataset(out)
    assert ds.sequences.as_lists() == src.sequences.as_lists()
    assert ds.item_raw_ids == src.item_raw_ids and ds.item_text == src.item_text
    assert ds.extras["item_attributes"].as_lists() == src.extras["item_attributes"].as_lists()
    assert ds.extras["user_raw_ids"] == ["uA", "uB", "uC"]
    assert ds.features == {}
    with pytest.raises(DataError, match="already holds a prepared dataset; pass --overwrite"):
        prepare_from_folder(bench, out)
    with pytest.raises(DataError, match="--out must differ"):
        prepare_from_folder(bench, bench)


def _prep_with_feature(bench, tmp_path):
    out = prepare_from_folder(bench, tmp_path / "prep")
    values = np.zeros((5, 3), dtype=np.float32)
    values[1:] = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    present = np.array([False, True, True, True, True])
    values[3], present[3] = 0.0, False  # item 3 has no content
    fp = item_map_fingerprint(4, ["X1", "X2", "X3", "X4"])
    write_feature(out, "text", values, present, encoder="test", encoder_version="1", fingerprint=fp)
    return out, values, present


def test_features_load_with_presence_mask(bench, tmp_path):
    out, values, present = _prep_with_feature(bench, tmp_path)
    info = json.loads((out / "features" / "text.json").read_text())
    assert info["missing"] == [3] and info["dim"] == 3 and info["num_items"] == 4
    ds = load_dataset(out)
    f = ds.features["text"]
    assert np.array_equal(f.values, values) and np.array_equal(f.present, present)
    assert f.values.shape == (ds.num_items + 1, 3) and not f.present[0]
    assert load_dataset(out, modalities=("text",)).features.keys() == {"text"}
    with pytest.raises(DataError, match=r"no feature matrix for modality 'image'; available: \['text'\]"):
        load_dataset(out, modalities=("image",))
    with pytest.raises(DataError, match="raw/benchmark folder without feature matrices"):
        load_dataset(bench, modalities=("text",))


def test_feature_with_other_item_map_is_refused(bench, tmp_path):
    out, values, present = _prep_with_feature(bench, tmp_path)
    write_feature(out, "other", values, present, encoder="t", encoder_version="1",
                  fingerprint=item_map_fingerprint(4, ["X2", "X1", "X3", "X4"]))
    with pytest.raises(DataError, match="'other' .* was built for item map .* rows may belong to other items"):
        load_dataset(out)
    assert load_dataset(out, modalities=("text",)).features["text"].dim == 3


def test_feature_with_wrong_row_count_is_refused(bench, tmp_path):
    out, _, _ = _prep_with_feature(bench, tmp_path)
    np.save(out / "features" / "text.npy", np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(DataError, match=r"has shape \(4, 3\), expected \(5, dim\)"):
        load_dataset(out)
    info = json.loads((out / "features" / "text.json").read_text())
    info["num_items"] = 3
    (out / "features" / "text.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="is for 3 items but the dataset has 4"):
        load_dataset(out)


def test_missing_rows_must_be_zero(bench, tmp_path):
    out, values, present = _prep_with_feature(bench, tmp_path)
    noisy = values.copy()
    noisy[3] = 0.5
    with pytest.raises(DataError, match="never random fill"):
        write_feature(out, "text", noisy, present, encoder="t", encoder_version="1",
                      fingerprint=item_map_fingerprint(4, ["X1", "X2", "X3", "X4"]))
    np.save(out / "features" / "text.npy", noisy)
    with pytest.raises(DataError, match="rows of missing items are not zero"):
        load_dataset(out)


def test_non_finite_features_are_refused_naming_file_item_and_column(bench, tmp_path, capsys):
    """One NaN used to spread through the feature standardisation to every item and surface as "training
    loss became nan ... try a lower train.lr": now the loader, the writer and the in-memory matrix refuse it."""
    out, values, present = _prep_with_feature(bench, tmp_path)
    bad = values.copy()
    bad[2, 1] = np.nan
    bad[4, 0] = np.inf
    np.save(out / "features" / "text.npy", bad)
    npy = re.escape(str(out / "features" / "text.npy"))
    with pytest.raises(DataError, match=npy + r": 2 non-finite value\(s\) .* in 2 row\(s\); the first is nan at "
                                              r"row 2 \(item 2\), column 1"):
        load_dataset(out)
    assert run_cli(["train", "--data", str(out), "--set", "model.prism.enabled=true", "--output-dir",
                    str(tmp_path / "run")]) == 2
    assert "non-finite" in capsys.readouterr().err and not (tmp_path / "run").exists()
    with pytest.raises(DataError, match=r"'text': 2 non-finite value"):
        write_feature(out, "text", bad, present, encoder="t", encoder_version="1",
                      fingerprint=item_map_fingerprint(4, ["X1", "X2", "X3", "X4"]))
    with pytest.raises(DataError, match=r"'img': 1 non-finite value\(s\) .* the first is -inf at row 1"):
        FeatureMatrix("img", np.array([[0.0], [-np.inf]], dtype=np.float32), np.array([False, True]))


def test_incomplete_prepared_folders_name_the_missing_file(bench, tmp_path, capsys):
    out, _, _ = _prep_with_feature(bench, tmp_path)
    fdir = out / "features"
    (fdir / "text.json").rename(tmp_path / "text.json")  # a matrix without its JSON is not dropped silently
    with pytest.raises(DataError, match=r"text\.npy has no .*features/text\.json beside it"):
        load_dataset(out)
    (tmp_path / "text.json").rename(fdir / "text.json")
    (fdir / "text.npy").rename(tmp_path / "text.npy")  # nor a JSON without its matrix
    with pytest.raises(DataError, match=r"text\.json has no .*features/text\.npy beside it"):
        load_dataset(out, modalities=("text",))
    (tmp_path / "text.npy").rename(fdir / "text.npy")
    assert load_dataset(out).features.keys() == {"text"}
    # without dataset.json the folder is not read as a benchmark folder with "modalities: none"
    (out / "dataset.json").unlink()
    assert run_cli(["data", "stats", "--data", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out / 'dataset.json'} is missing, but {fdir} is there")


def test_edited_item_map_is_refused(bench, tmp_path):
    out = prepare_from_folder(bench, tmp_path / "prep")
    imap = out / "item_map.tsv"
    imap.write_text(imap.read_text().replace("X1", "X9"))
    with pytest.raises(DataError, match="item_map.tsv does not match dataset.json"):
        load_dataset(out)


def test_overwrite_drops_stale_features(bench, tmp_path):
    out, _, _ = _prep_with_feature(bench, tmp_path)
    ds = read_prepared(out, modalities=None)
    ds.item_raw_ids = ["X1", "X2", "X3", "X5"]
    write_prepared(out, ds, overwrite=True)
    assert available_features(out) == []
    assert load_dataset(out).item_raw_ids[-1] == "X5"


def test_item_attributes_csr():
    a = ItemAttributes.from_lists([["b", "a", "b"], [], ["a"]])
    assert a.vocab == ["b", "a"] and a[1] == ["b", "a"] and a[2] == [] and a[3] == ["a"]
    assert a.counts().tolist() == [0, 2, 0, 1]
    assert a.multi_hot().toarray().tolist() == [[0, 0], [1, 1], [0, 0], [0, 1]]


def test_cli_prepare_stats_export(bench, tmp_path, capsys):
    out = tmp_path / "p"
    assert run_cli(["data", "prepare", "--from-folder", str(bench), "--out", str(out)]) == 0
    assert "3 users, 4 items, 10 interactions" in capsys.readouterr().out
    assert run_cli(["data", "prepare", "--from-folder", str(bench), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err
    assert run_cli(["data", "prepare", "folder", "--from-folder", str(bench), "--out", str(out), "--overwrite"]) == 0
    capsys.readouterr()
    assert run_cli(["data", "stats", "--data", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 4, 10)
    assert run_cli(["data", "stats", "--data", str(out)]) == 0
    assert "modalities: none" in capsys.readouterr().out
    assert run_cli(["data", "export-recbole", "--data", str(out), "--out", str(tmp_path / "rb")]) == 0
    assert (tmp_path / "rb" / "tiny_bench.inter").read_text().startswith("user_id:token\titem_id:token")
    assert run_cli(["data", "prepare"]) == 2
    inter = tmp_path / "rb" / "tiny_bench.inter"
    assert run_cli(["data", "prepare", "recbole", "--inter", str(inter), "--item",
                    str(tmp_path / "rb" / "tiny_bench.item"), "--k-core", "0", "--out", str(tmp_path / "p2")]) == 0
    assert load_dataset(tmp_path / "p2").sequences.as_lists() == load_dataset(out).sequences.as_lists()
    inter.write_text(inter.read_text() + "broken line\n")
    assert run_cli(["data", "prepare", "recbole", "--inter", str(inter), "--k-core", "0",
                    "--out", str(tmp_path / "p3")]) == 2
    assert "tiny_bench.inter:12: expected 3 tab-separated fields" in capsys.readouterr().err
    assert run_cli(["data", "prepare", "recbole", "--inter", str(inter), "--k-core", "0", "--on-error", "skip",
                    "--out", str(tmp_path / "p3"), "--no-progress"]) == 0
    assert "skipped 1 malformed line" in capsys.readouterr().err


def test_prepared_beauty_matches_readme(shared_data, tmp_path):
    out = prepare_from_folder(shared_data / "amazon_beauty", tmp_path / "beauty")
    ds = load_dataset(out)
    s = ds.statistics()
    assert (s["users"], s["items"], s["interactions"]) == (22363, 12101, 198502)
    assert s["min_len"] == 5 and s["max_len"] == 204
    assert ds.item_raw_ids[0] == "B004756YJA" and ds.item_text[0] == "nail lacquer simmer and shimmer"
    assert ds.extras["item_attributes"][1] == ["OPI", "Makeup", "Nails", "Nail Polish"]
    assert ds.extras["item_attributes"].num_attributes == 637


def test_raw_ids_are_fingerprinted_as_item_map_stores_them(tmp_path):
    from prismrec.data import RecDataset, Sequences

    seqs = Sequences.from_lists([[1, 2, 3], [3, 2, 1]])
    ds = RecDataset(name="t", sequences=seqs, item_raw_ids=["A", " B\tx  y ", "C\n"])
    out = write_prepared(tmp_path / "p", ds)
    back = load_dataset(out)  # used to fail: "item_map.tsv does not match dataset.json ... edited by hand"
    assert back.item_raw_ids == ["A", "B x y", "C"]
    assert json.loads((out / "dataset.json").read_text())["item_map_fingerprint"] == back.item_map_fingerprint()
    ds.item_raw_ids = ["A", "B ", "B"]
    with pytest.raises(DataError, match=r"raw ids of items 2 and 3 \('B ', 'B'\) both become 'B' in item_map.tsv"):
        write_prepared(tmp_path / "q", ds)
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("name,content,needle", [
    ("datamaps.json", {"id2user": {"1": "uA"}}, "datamaps.json: no 'id2item' object"),
    ("datamaps.json", [1], "datamaps.json: expected the top level to be a JSON object, found an array"),
    ("datamaps.json", {"id2item": ["X1", "X2", "X3", "X4"]}, "datamaps.json: expected 'id2item' to be a JSON object"),
    ("datamaps.json", {"id2item": {"1": "X1", "2": ["X2"], "3": "X3", "4": "X4"}},
     "datamaps.json: id2item entry 2 is ['X2'], expected a raw id (a string)"),
    ("datamaps.json", {"id2item": {"1": "X1", "2": "X2", "3": "X3", "4": "X4"}, "id2user": "uA"},
     "datamaps.json: expected 'id2user' to be a JSON object, found a string"),
    ("Tiny_item2attributes.json", [[1, 2], [2]], "Tiny_item2attributes.json: expected the top level (item id -> "
                                                 "attribute ids) to be a JSON object, found an array"),
    ("derived/attribute_id2name.json", ["OPI", "Nails"], "attribute_id2name.json: expected the top level"),
    ("derived/attribute_id2name.json", {"1": "OPI", "x": "Nails"}, "attribute_id2name.json: key 'x' is not an integer"),
])
def test_malformed_benchmark_json_names_the_file(bench, name, content, needle):
    # these gave an AttributeError/TypeError, or blamed the sequence file ("exceeds the dataset's 0 items")
    (bench / name).write_text(json.dumps(content))
    with pytest.raises(DataError) as exc:
        load_dataset(bench)
    assert needle in str(exc.value)


@pytest.mark.parametrize("field,value,needle", [
    ("format_version", "1", "dataset.json: format_version is '1', expected a positive integer"),
    ("num_items", "x", "dataset.json: num_items is 'x', expected a non-negative integer"),
    ("num_users", True, "dataset.json: num_users is True, expected a non-negative integer"),
    ("item_map_fingerprint", 5, "dataset.json: item_map_fingerprint is 5, expected a string"),
])
def test_malformed_dataset_json_is_named(bench, tmp_path, field, value, needle):
    out = prepare_from_folder(bench, tmp_path / "prep")
    meta = json.loads((out / "dataset.json").read_text())
    meta[field] = value
    (out / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError) as exc:  # were a bare TypeError / ValueError
        load_dataset(out)
    assert needle in str(exc.value)


@pytest.mark.parametrize("rows,needle", [
    ("1\tX1\n3\tX3\n2\tX2\n4\tX4\n", "item_map.tsv:3: expected item_id 2, found 3"),
    ("1\tX1\n2\tX2\n3\tX3\n", "item_map.tsv: 3 rows, expected 4"),
    ("1\tX1\n2\tX2\n3\tX3\n4\tX4\n5\tX5\n", "item_map.tsv:6: expected 4 rows (item_id 1..4), found an extra row"),
    ("1\tX1\n2\tX2\n3\tX3\n4_0\tX4\n", "item_map.tsv:5: item_id '4_0' is not an integer"),
])
def test_item_map_rows_out_of_order_name_the_line(bench, tmp_path, rows, needle):
    out = prepare_from_folder(bench, tmp_path / "prep")
    (out / "item_map.tsv").write_text("item_id\traw_id\n" + rows)
    with pytest.raises(DataError) as exc:
        load_dataset(out)
    assert needle in str(exc.value)


def test_benchmark_item_meta_out_of_order_names_the_line(bench):
    tsv = bench / "derived" / "item_meta.tsv"
    tsv.write_text(tsv.read_text().replace("2\tX2\t", "5\tX2\t"))
    with pytest.raises(DataError, match=r"item_meta\.tsv:3: expected item_id 2, found 5"):
        load_dataset(bench)


def test_recommend_takes_raw_item_ids(bench, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--data", str(bench), "--output-dir", str(run), *sets(TINY)]) == 0
    capsys.readouterr()
    assert main(["recommend", "--run", str(run), "--history", "1,2", "-k", "2", "--json"]) == 0
    by_id = json.loads(capsys.readouterr().out)
    assert main(["recommend", "--run", str(run), "--history", "X1, X2", "--raw-ids", "-k", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == by_id
    assert {r["raw_id"] for r in by_id} == {"X3", "X4"}  # the history is excluded
    assert main(["recommend", "--run", str(run), "--history", "X1,X9,B0", "--raw-ids"]) == 2
    assert "unknown raw item id(s) 'X9', 'B0' (not in the dataset's item map of 4 items)" in capsys.readouterr().err
    assert main(["recommend", "--run", str(run), "--history", "X1"]) == 2
    assert "(or raw item ids with --raw-ids), got 'X1'" in capsys.readouterr().err


def test_raw_ids_of_a_dataset_without_an_item_map_are_refused():
    from prismrec.data import RecDataset, Sequences
    ds = RecDataset(name="seqs", sequences=Sequences.from_lists([np.array([1, 2, 3])], num_items=3))
    with pytest.raises(DataError, match=r"seqs: this dataset has no raw item ids .* give its item ids \(1..3\)"):
        ds.items_from_raw_ids(["1"])
