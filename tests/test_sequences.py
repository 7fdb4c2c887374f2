import numpy as np
import pytest

from prismrec.data import DataError, read_sequence_file
from prismrec.data.split import LeaveOneOut, trim_left_padding
from prismrec.data.sequences import Sequences


def write(tmp_path, text):
    p = tmp_path / "seqs.txt"
    p.write_text(text)
    return p


def test_reads_and_reports_dropped(tmp_path):
    p = write(tmp_path, "1 1 2 3 4\n\n2 5 6\n3 2 3 4\n")
    seqs, report = read_sequence_file(p)
    assert seqs.user_ids.tolist() == [1, 3]
    assert seqs[0].tolist() == [1, 2, 3, 4]
    assert seqs.num_items == 4
    assert report.blank_lines == [2]
    assert report.short_users == [(3, 2, 2)]
    assert "dropped 1 user" in report.summary(3)


@pytest.mark.parametrize("text,needle", [
    ("1 1 2 x\n", "seqs.txt:1: expected integer ids"),
    ("1 1 2 3\n2 4 0 5\n", "seqs.txt:2: item id 0 is < 1"),
    ("0 1 2 3\n", "seqs.txt:1: user id 0 is < 1"),
    ("1 1 2 3\n1 4 5 6\n", "seqs.txt:2: duplicate user id 1 (first seen at line 1)"),
    ("1 1 2\n", "no user has at least 3 items"),
    ("1 1 2 3.5\n", "expected integer ids"),
])
def test_bad_input_errors_name_file_and_line(tmp_path, text, needle):
    with pytest.raises(DataError) as exc:
        read_sequence_file(write(tmp_path, text))
    assert needle in str(exc.value)


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(DataError, match="cannot open sequence file"):
        read_sequence_file(tmp_path / "nope.txt")


def test_leave_one_out_by_hand():
    seqs = Sequences.from_lists([[1, 2, 3, 4, 5], [6, 7, 8]], num_items=8)
    loo = LeaveOneOut.build(seqs, max_seq_len=3)
    # user 0: train = [1, 2, 3]; inputs/targets over the last 4 training items (only 3 exist)
    assert loo.train_inputs[0].tolist() == [0, 1, 2]
    assert loo.train_targets[0].tolist() == [0, 2, 3]
    assert loo.valid.inputs[0].tolist() == [1, 2, 3] and loo.valid.targets[0].item() == 4
    assert loo.test.inputs[0].tolist() == [2, 3, 4] and loo.test.targets[0].item() == 5  # truncated: most recent
    assert loo.test.history[0].tolist()[:4] == [1, 2, 3, 4]
    assert loo.valid.history[0].tolist() == [1, 2, 3] and loo.valid.history[1].tolist() == [6, 0, 0]
    # user 1: train = [6]: no training pair; valid predicts 7 from [6]; test predicts 8 from [6, 7]
    assert loo.train_targets[1].tolist() == [0, 0, 0]
    assert loo.valid.inputs[1].tolist() == [0, 0, 6] and loo.valid.targets[1].item() == 7
    assert loo.test.inputs[1].tolist() == [0, 6, 7] and loo.test.targets[1].item() == 8


def test_long_sequence_truncation_keeps_most_recent():
    seq = list(range(1, 21))
    loo = LeaveOneOut.build(Sequences.from_lists([seq], num_items=20), max_seq_len=5)
    assert loo.train_inputs[0].tolist() == [13, 14, 15, 16, 17]
    assert loo.train_targets[0].tolist() == [14, 15, 16, 17, 18]
    assert loo.test.inputs[0].tolist() == [15, 16, 17, 18, 19]


def test_trim_left_padding():
    import torch
    x = torch.tensor([[0, 0, 1, 2], [0, 0, 0, 3]])
    y = x + 10
    tx, ty = trim_left_padding(x, y)
    assert tx.tolist() == [[1, 2], [0, 3]] and ty.tolist() == [[11, 12], [10, 13]]


def test_from_lists_rejects_out_of_range():
    with pytest.raises(DataError):
        Sequences.from_lists([[1, 2, 9]], num_items=5)
    assert Sequences.from_lists([np.array([3, 1, 2])]).num_items == 3


@pytest.mark.parametrize("text,needle", [
    ("1 2 3 4\n2 5 99999999999999999999 6\n", "seqs.txt:2: id 99999999999999999999 is out of range"),
    ("1 2 3 4\n2 5 1_0 6\n", "seqs.txt:2: expected integer ids separated by spaces, found '1_0'"),
    ("1 2 3 \u0663\n", "seqs.txt:1: expected integer ids separated by spaces, found '\u0663'"),
    ("1 +2 3 4\n", "seqs.txt:1: expected integer ids separated by spaces, found '+2'"),
    ("1 2\u00a03 4\n", "seqs.txt:1: expected integer ids separated by spaces, found '\\xa0'"),
])
def test_ids_are_ascii_integers_within_int64(tmp_path, text, needle):
    # int() (which numpy uses) reads 1_0 as 10 and Arabic-Indic digits as digits; ids above
    # int64 used to escape as a bare StopIteration
    p = tmp_path / "seqs.txt"
    p.write_bytes(text.encode("utf-8"))
    with pytest.raises(DataError) as exc:
        read_sequence_file(p)
    assert needle in str(exc.value)


def test_a_byte_order_mark_is_not_read_as_part_of_the_first_user_id(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes("\ufeff1 1 2 3\n2 2 3 4\n".encode("utf-8"))  # as some Windows editors save UTF-8
    seqs, _ = read_sequence_file(p)
    assert seqs.user_ids.tolist() == [1, 2] and seqs.as_lists() == [[1, 2, 3], [2, 3, 4]]
    p.write_bytes("1 1 2 3\n2 \ufeff2 3 4\n".encode("utf-8"))  # elsewhere it is a bad token, reported
    with pytest.raises(DataError, match=r"bom.txt:2"):
        read_sequence_file(p)
