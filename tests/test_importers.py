"""Raw-source importers: Amazon 2014/2018, Yelp, RecBole; k-core, ordering, ids, malformed lines."""
from __future__ import annotations

import gzip
import json

import numpy as np
import polars as pl
import pytest

from prismrec.data import DataError, load_dataset
from prismrec.data.importers import (PipelineConfig, build_dataset, export_recbole, import_amazon2014,
                                     import_amazon2018, import_recbole, import_yelp)
from prismrec.data.importers.lines import ErrorPolicy, iter_line_chunks, json_fields
from prismrec.data.importers.pipeline import iterated_k_core

NO_CORE = PipelineConfig(k_core=0)


def write_gz(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def review(user, item, t, rating=5.0):
    return json.dumps({"reviewerID": user, "asin": item, "reviewerName": "x", "helpful": [0, 0],
                       "reviewText": "fine\ttext", "overall": rating, "summary": "s", "unixReviewTime": t,
                       "reviewTime": "01 1, 2014"})


# user uB appears first in the file; uA's two items share a timestamp (file order decides)
REVIEWS = [
    review("uB", "i3", 300), review("uA", "i2", 200), review("uB", "i1", 100),
    review("uA", "i1", 200), review("uA", "i4", 50), review("uB", "i4", 400),
]


@pytest.fixture
def amazon2014_files(tmp_path):
    meta = [
        "{'asin': 'i1', 'title': 'Red &amp; Blue Nail Polish', 'brand': 'OPI', "
        "'categories': [['Beauty', 'Makeup', 'Nails'], ['Beauty', 'Gifts']], 'imUrl': 'http://x/i1.jpg'}",
        "{'asin': 'i2', 'title': \"Men's Shampoo\", 'categories': [['Beauty', 'Hair Care']], 'price': 3.5}",
        "{'asin': 'i3', 'brand': 'Nivea', 'categories': [['Beauty']], 'salesRank': {'Beauty': 12}}",
        "{'asin': 'unused', 'title': 'not in any review'}",
    ]
    return (write_gz(tmp_path / "reviews_Beauty_5.json.gz", REVIEWS),
            write_gz(tmp_path / "meta_Beauty.json.gz", meta))


def test_amazon2014_order_ids_and_metadata(amazon2014_files):
    reviews, meta = amazon2014_files
    ds = import_amazon2014(reviews, meta, config=NO_CORE, progress=False)
    # users numbered by first appearance in the file: uB (line 1) = user 1, uA = user 2
    assert ds.extras["user_raw_ids"] == ["uB", "uA"]
    # uB oldest first: i1(100) i3(300) i4(400); uA: i4(50), then i2 and i1 tie at 200 -> file order i2, i1
    raw = {i + 1: r for i, r in enumerate(ds.item_raw_ids)}
    seqs = [[raw[i] for i in s] for s in ds.sequences.as_lists()]
    assert seqs == [["i1", "i3", "i4"], ["i4", "i2", "i1"]]
    # items numbered by first appearance walking users in order, oldest first
    assert ds.item_raw_ids == ["i1", "i3", "i4", "i2"]
    assert ds.sequences.as_lists() == [[1, 2, 3], [3, 4, 1]]
    assert ds.item_text == ["Red & Blue Nail Polish", "", "", "Men's Shampoo"]
    attrs = ds.extras["item_attributes"]
    assert attrs[1] == ["OPI", "Beauty", "Makeup", "Nails", "Gifts"]
    assert attrs[2] == ["Nivea", "Beauty"]
    assert attrs[3] == []  # i4 has no metadata line
    assert ds.extras["item_image_url"] == ["http://x/i1.jpg", "", "", ""]
    rep = ds.extras["import_report"]
    assert rep["interactions_read"] == 6 and rep["items_with_metadata"] == 3


def test_amazon2014_meta_is_never_evaluated(tmp_path, amazon2014_files):
    reviews, _ = amazon2014_files
    marker = tmp_path / "pwned"
    meta = write_gz(tmp_path / "meta_evil.json.gz", [
        f"{{'asin': 'i1', 'title': __import__('os').system('touch {marker}')}}"])
    with pytest.raises(DataError, match=r"meta_evil\.json\.gz:1: cannot parse"):
        import_amazon2014(reviews, meta, config=NO_CORE, progress=False)
    assert not marker.exists()
    ds = import_amazon2014(reviews, meta, config=NO_CORE, on_error="skip", progress=False)
    assert not marker.exists()
    assert ds.extras["import_report"]["skipped_lines"] == {str(meta): 1}
    assert ds.item_text[0] == ""


def test_malformed_review_lines_error_or_counted_skip(tmp_path):
    lines = REVIEWS[:2] + ["{not json", review("uC", "i9", 1).replace('"asin"', '"ASIN"'), ""] + REVIEWS[2:]
    path = write_gz(tmp_path / "reviews_X.json.gz", lines)
    with pytest.raises(DataError) as err:
        import_amazon2014(path, config=NO_CORE, progress=False)
    msg = str(err.value)
    assert "reviews_X.json.gz:3" in msg and "not valid JSON" in msg and "--on-error skip" in msg
    ds = import_amazon2014(path, config=NO_CORE, on_error="skip", progress=False)
    rep = ds.extras["import_report"]
    assert rep["skipped_lines"] == {str(path): 2}
    assert any(":4: missing field 'asin'" in e for e in rep["skipped_examples"])
    assert rep["blank_lines"] == 1
    assert ds.sequences.num_interactions == 6


def test_wrong_type_is_reported_with_line(tmp_path):
    bad = json.dumps({"reviewerID": "u", "asin": "i", "unixReviewTime": "yesterday"})
    path = tmp_path / "r.json"
    path.write_text("\n".join(REVIEWS + [bad]) + "\n")
    with pytest.raises(DataError, match=r"r\.json:7: field 'unixReviewTime' is 'yesterday', expected a number"):
        import_amazon2014(path, config=NO_CORE, progress=False)


def test_line_numbers_survive_chunking(tmp_path):
    path = tmp_path / "many.json"
    lines = [review(f"u{i % 7}", f"i{i % 5}", i) for i in range(300)]
    lines[257] = "{broken"
    path.write_text("\n".join(lines))  # no trailing newline
    frames = list(iter_line_chunks(path, chunk_bytes=1000, progress=False))
    assert len(frames) > 5
    assert pl.concat(frames)["lineno"].to_list() == list(range(1, 301))
    with pytest.raises(DataError, match=r"many\.json:258: not valid JSON"):
        for f in frames:
            json_fields(f, {"asin": pl.String}, ("asin",), path, ErrorPolicy("error"))


def test_iterated_k_core_cascades():
    # u3 has 1 interaction -> removed; then item c drops to 1 -> removed; then u2 drops to 1 -> removed
    rows = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "c"), ("u3", "c"), ("u4", "a"), ("u4", "b")]
    df = pl.DataFrame({"user": [u for u, _ in rows], "item": [i for _, i in rows]})
    core, rounds = iterated_k_core(df, 2)
    assert sorted(core.rows()) == [("u1", "a"), ("u1", "b"), ("u4", "a"), ("u4", "b")]
    assert rounds >= 2


def test_dedup_and_min_rating():
    df = pl.DataFrame({"user": ["u", "u", "u", "v"], "item": ["a", "b", "a", "a"], "ts": [3.0, 1.0, 2.0, 1.0],
                       "order": [1, 2, 3, 4], "rating": [5.0, 2.0, 4.0, 5.0]})
    ds = build_dataset(df, name="t", source="t", config=PipelineConfig(k_core=0, dedup=True))
    raw = ds.item_raw_ids
    assert [[raw[i - 1] for i in s] for s in ds.sequences.as_lists()] == [["b", "a"], ["a"]]
    ds = build_dataset(df, name="t", source="t", config=PipelineConfig(k_core=0, min_rating=4))
    assert ds.sequences.num_interactions == 3
    with pytest.raises(DataError, match="no interactions left"):
        build_dataset(df, name="t", source="t", config=PipelineConfig(k_core=5))


def test_amazon2018_metadata(tmp_path):
    reviews = write_gz(tmp_path / "Beauty_5.json.gz", REVIEWS)
    meta = write_gz(tmp_path / "meta_Beauty.json.gz", [
        json.dumps({"asin": "i1", "title": "<span class='x'>Soft</span> Soap", "brand": "Dove",
                    "category": ["Beauty", "Bath"], "imageURLHighRes": ["http://h/1.jpg"], "imageURL": ["http://l/1.jpg"]}),
        json.dumps({"asin": "i1", "title": "duplicate line, ignored"}),
        json.dumps({"asin": "i4", "title": "Lotion", "category": [], "imageURL": ["http://l/4.jpg"]}),
    ])
    ds = import_amazon2018(reviews, meta, config=NO_CORE, progress=False)
    assert ds.name == "Beauty"
    i1, i4 = ds.item_raw_ids.index("i1") + 1, ds.item_raw_ids.index("i4") + 1
    assert ds.item_text[i1 - 1] == "Soft Soap" and ds.item_text[i4 - 1] == "Lotion"
    assert ds.extras["item_attributes"][i1] == ["Dove", "Beauty", "Bath"]
    assert ds.extras["item_image_url"][i1 - 1] == "http://h/1.jpg"
    assert ds.extras["item_image_url"][i4 - 1] == "http://l/4.jpg"


def test_yelp(tmp_path):
    def r(u, b, d):
        return json.dumps({"review_id": "r", "user_id": u, "business_id": b, "stars": 4, "text": "ok", "date": d})

    rev = tmp_path / "yelp_academic_dataset_review.json"
    rev.write_text("\n".join([r("u1", "b1", "2018-01-02 10:00:00"), r("u1", "b2", "2017-05-01 09:00:00"),
                              r("u2", "b1", "2016-01-01"), r("u2", "b2", "2019-01-01 00:00:00")]) + "\n")
    bus = tmp_path / "yelp_academic_dataset_business.json"
    bus.write_text("\n".join([
        json.dumps({"business_id": "b1", "name": "Sal's Pizza", "categories": "Pizza, Italian, Restaurants"}),
        json.dumps({"business_id": "b2", "name": "Greek Diner", "categories": ["Diners", "Greek"]}),
    ]) + "\n")
    ds = import_yelp(rev, bus, config=NO_CORE, progress=False)
    raw = ds.item_raw_ids
    assert [[raw[i - 1] for i in s] for s in ds.sequences.as_lists()] == [["b2", "b1"], ["b1", "b2"]]
    assert ds.item_text == ["Greek Diner", "Sal's Pizza"]
    assert ds.extras["item_attributes"][2] == ["Pizza", "Italian", "Restaurants"]
    rev.write_text(rev.read_text() + r("u3", "b1", "last tuesday") + "\n")
    with pytest.raises(DataError, match=r"review\.json:5: field 'date' is 'last tuesday'"):
        import_yelp(rev, bus, config=NO_CORE, progress=False)


INTER = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
         "u1\ta\t5\t10\nu2\tb\t4\t3\nu1\tb\t3\t5\nu2\tc\t5\t3\nu1\tc\t1\t20\n")
ITEM = ("item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq\tprice:float\n"
        "a\tred nail polish\tOPI\tMakeup Nails\t3.0\nb\tshampoo\t\tHair\t1.0\n")


def test_recbole_import(tmp_path):
    (tmp_path / "x.inter").write_text(INTER)
    (tmp_path / "x.item").write_text(ITEM)
    ds = import_recbole(tmp_path / "x.inter", tmp_path / "x.item", config=NO_CORE, progress=False)
    raw = ds.item_raw_ids
    assert ds.extras["user_raw_ids"] == ["u1", "u2"]
    assert [[raw[i - 1] for i in s] for s in ds.sequences.as_lists()] == [["b", "a", "c"], ["b", "c"]]
    assert ds.item_text == ["shampoo", "red nail polish", ""]
    assert ds.extras["item_attributes"][2] == ["OPI", "Makeup", "Nails"]
    ds = import_recbole(tmp_path / "x.inter", config=PipelineConfig(k_core=0, min_rating=4), progress=False)
    assert ds.sequences.num_interactions == 3


def test_recbole_malformed(tmp_path):
    p = tmp_path / "bad.inter"
    p.write_text(INTER + "u3\tz\n")
    with pytest.raises(DataError, match=r"bad\.inter:7: expected 4 tab-separated fields \(header\), found 2"):
        import_recbole(p, config=NO_CORE, progress=False)
    ds = import_recbole(p, config=NO_CORE, on_error="skip", progress=False)
    assert ds.extras["import_report"]["skipped_lines"] == {str(p): 1}
    p.write_text("user_id\titem_id\nu\ti\n")
    with pytest.raises(DataError, match=r"bad\.inter:1: header field 1 is 'user_id'"):
        import_recbole(p, config=NO_CORE, progress=False)
    # a header separated by spaces once parsed as one field named 'user_id:token item_id:token timestamp'
    p.write_text(INTER.replace("\t", " "))
    with pytest.raises(DataError, match=r"bad\.inter:1: the header's fields \['user_id:token', .* are separated "
                                        r"by spaces; RecBole atomic files separate fields \(header and rows\) by tabs"):
        import_recbole(p, config=NO_CORE, progress=False)
    p.write_text(INTER.replace("u2\tb\t4\t3", "u2\tb\t4\tnoon"))
    with pytest.raises(DataError, match=r"bad\.inter:3: field 'timestamp' is 'noon'"):
        import_recbole(p, config=NO_CORE, progress=False)


@pytest.mark.parametrize("old,new,reason", [
    ("u2\tb\t4\t3", "u2\tb\t4\tnan", "bad.inter:3: field 'timestamp' is 'nan', expected a finite number"),
    ("u1\tb\t3\t5", "u1\tb\t3\t-inf", "bad.inter:4: field 'timestamp' is '-inf', expected a finite number"),
    ("u1\tb\t3\t5", "u1\tb\tinf\t5", "bad.inter:4: field 'rating' is 'inf', expected a finite number"),
])
def test_recbole_non_finite_numbers_are_malformed(tmp_path, old, new, reason):
    # polars parses "nan" and "inf": a NaN timestamp silently moved its item to the end of the sequence
    p = tmp_path / "bad.inter"
    p.write_text(INTER.replace(old, new))
    with pytest.raises(DataError) as err:
        import_recbole(p, config=NO_CORE, progress=False)
    assert reason in str(err.value)
    ds = import_recbole(p, config=NO_CORE, on_error="skip", progress=False)
    assert ds.extras["import_report"]["skipped_lines"] == {str(p): 1}
    assert ds.sequences.num_interactions == 4


def test_recbole_export_import_small(tmp_path):
    (tmp_path / "x.inter").write_text(INTER)
    (tmp_path / "x.item").write_text(ITEM)
    ds = import_recbole(tmp_path / "x.inter", tmp_path / "x.item", config=NO_CORE, progress=False)
    paths = export_recbole(ds, tmp_path / "out", name="y")
    back = import_recbole(paths[0], paths[1], config=NO_CORE, progress=False)
    assert back.sequences.as_lists() == ds.sequences.as_lists()
    assert back.item_raw_ids == ds.item_raw_ids and back.item_text == ds.item_text
    assert back.extras["item_attributes"].as_lists() == ds.extras["item_attributes"].as_lists()


def test_beauty_recbole_round_trip(shared_data, tmp_path):
    ds = load_dataset(shared_data / "amazon_beauty")
    paths = export_recbole(ds, tmp_path, name="Beauty")
    header = paths[0].read_text().split("\n", 1)[0]
    assert header == "user_id:token\titem_id:token\ttimestamp:float"
    back = import_recbole(paths[0], paths[1], progress=False)  # default 5-core: Beauty is already one
    assert back.num_users == 22363 and back.num_items == 12101
    assert np.array_equal(back.sequences.items, ds.sequences.items)
    assert np.array_equal(back.sequences.offsets, ds.sequences.offsets)
    assert back.item_raw_ids == ds.item_raw_ids
    assert back.extras["user_raw_ids"] == ds.extras["user_raw_ids"]
    assert back.item_text == ds.item_text


def test_unit_separator_inside_a_line_is_kept(tmp_path):
    path = tmp_path / "sep.txt"
    path.write_bytes(b"first\nsecond\x1fTAIL\nthird\n")
    assert [f["line"].to_list() for f in iter_line_chunks(path, progress=False)] == [["first", "second\x1fTAIL", "third"]]
    frames = list(iter_line_chunks(path, chunk_bytes=4, progress=False))  # the \x1f line opens a chunk
    assert pl.concat(frames)["line"].to_list() == ["first", "second\x1fTAIL", "third"]
    # in JSON a raw \x1f is an invalid control character: one malformed line, even as a chunk's first line
    reviews = tmp_path / "r.json"
    reviews.write_text("\n".join(['{"reviewerID": "u9", "asin": "x\x1fy", "unixReviewTime": 1}'] + REVIEWS) + "\n")
    with pytest.raises(DataError, match=r"r\.json:1: not valid JSON \(Invalid control character"):
        import_amazon2014(reviews, config=NO_CORE, progress=False)
    ds = import_amazon2014(reviews, config=NO_CORE, on_error="skip", progress=False)
    assert ds.extras["import_report"]["skipped_lines"] == {str(reviews): 1}
    assert ds.sequences.num_interactions == 6


WRONG_TYPES = [  # fields of one more review by uA, and the reason it is malformed
    ('"asin": ["i1"], "unixReviewTime": 7', "field 'asin' is a list, expected a single value"),
    ('"asin": {"id": "i1"}, "unixReviewTime": 7', "field 'asin' is a dict, expected a single value"),
    ('"asin": "", "unixReviewTime": 7', "field 'asin' is empty"),
    ('"asin": "i2", "unixReviewTime": true', "field 'unixReviewTime' is True, expected a number"),
    ('"asin": "i2", "unixReviewTime": "7"', "field 'unixReviewTime' is '7', expected a number"),
    ('"asin": "i2", "unixReviewTime": 1e400', "field 'unixReviewTime' is inf, expected a finite number"),
    ('"asin": "i2", "unixReviewTime": 7, "overall": "five"', "field 'overall' is 'five', expected a number"),
    ('"asin": "i2", "unixReviewTime": 7, "overall": false', "field 'overall' is False, expected a number"),
]


@pytest.mark.parametrize("decode", ["alone", "beside_a_string_time", "halving"])
@pytest.mark.parametrize("fields,reason", WRONG_TYPES)
def test_wrongly_typed_json_values_are_malformed(tmp_path, monkeypatch, fields, reason, decode):
    # polars decodes some of these (true -> 1.0, "" -> an item) and rejects the whole chunk
    # for others; either way, in any company, the line is malformed and counted
    lines = REVIEWS + ['{"reviewerID": "uA", ' + fields + '}']
    if decode != "alone":  # a line polars rejects: the chunk is read value by value
        lines.append(json.dumps({"reviewerID": "uB", "asin": "i1", "unixReviewTime": "noon"}))
    if decode == "halving":  # and when that fails too, the chunk is halved down to the bad lines
        monkeypatch.setattr("prismrec.data.importers.lines._decode_per_value", lambda *a: None)
    path = tmp_path / "r.json"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        import_amazon2014(path, config=NO_CORE, progress=False)
    assert f"r.json:7: {reason}" in str(err.value)
    ds = import_amazon2014(path, config=PipelineConfig(k_core=0, min_rating=4), on_error="skip", progress=False)
    rep = ds.extras["import_report"]
    assert rep["skipped_lines"] == {str(path): len(lines) - 6}
    assert rep["interactions_read"] == rep["interactions"] == 6
    assert sorted(ds.item_raw_ids) == ["i1", "i2", "i3", "i4"]
