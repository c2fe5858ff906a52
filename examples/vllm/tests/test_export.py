"""HF datasets reads every export format of the loop with the features TRL
expects, and train_dpo.py refuses a broken export naming the file and row."""

import pyarrow.parquet as pq
import pytest
from datasets import List, Value
from trl.data_utils import is_conversational

import hand
import train_dpo

MESSAGE_LIST = List({"role": Value("string"), "content": Value("string")})
FEATURES = {"prompt": MESSAGE_LIST, "chosen": MESSAGE_LIST, "rejected": MESSAGE_LIST,
            "ref_chosen_logps": Value("float64"), "ref_rejected_logps": Value("float64")}


@pytest.mark.parametrize("name", ["train.jsonl", "train.parquet"])
def test_every_export_format_loads_with_trls_features(export_dir, name):
    ds = train_dpo.load_export(export_dir / name, need_reference=True)
    assert dict(ds.features) == FEATURES
    want = hand.read_pairs(export_dir / "train.jsonl")
    assert len(ds) == len(want)
    for got, row in zip(ds, want):
        assert is_conversational(got)
        assert got == {k: row[k] for k in FEATURES}, "the same pairs, the same doubles"
        assert [m["role"] for m in got["chosen"]] == ["assistant"]


def test_simpo_reads_an_export_without_reference(export_dir, tmp_path):
    table = pq.read_table(export_dir / "train.parquet").drop_columns(["ref_chosen_logps", "ref_rejected_logps"])
    path = tmp_path / "train.parquet"
    pq.write_table(table, path)
    ds = train_dpo.load_export(path, need_reference=False)
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    with pytest.raises(SystemExit, match=f"{path}: no ref_chosen_logps, ref_rejected_logps column"):
        train_dpo.load_export(path, need_reference=True)


def test_a_broken_export_is_refused_by_name(export_dir, tmp_path):
    rows = hand.read_pairs(export_dir / "train.jsonl")
    rows[1]["ref_rejected_logps"] = None
    path = hand.write_pairs(tmp_path / "train.jsonl", rows)
    with pytest.raises(SystemExit, match=f"{path}: row 2: ref_rejected_logps is None"):
        train_dpo.load_export(path, need_reference=True)

    empty = tmp_path / "empty" / "train.jsonl"
    empty.parent.mkdir()
    empty.write_text("")
    with pytest.raises(SystemExit, match=f"{empty}: no preference pairs"):
        train_dpo.load_export(empty, need_reference=True)

    with pytest.raises(SystemExit, match="not an export file"):
        train_dpo.load_export(tmp_path / "train.csv", need_reference=False)
    with pytest.raises(SystemExit, match="no such file"):
        train_dpo.load_export(tmp_path / "missing.jsonl", need_reference=False)

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": [')
    with pytest.raises(SystemExit, match=f"{broken}: cannot read it as json"):
        train_dpo.load_export(broken, need_reference=False)

    other = hand.write_pairs(tmp_path / "other.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(SystemExit, match="no prompt, chosen, rejected column"):
        train_dpo.load_export(other, need_reference=False)


def test_the_cli_checks_its_arguments():
    args = train_dpo.parse_args(["--base-model", "m", "--dataset", "d", "--output", "o", "--loss", "simpo"])
    assert args.beta == 2.0 and args.simpo_gamma == 0.5
    assert train_dpo.parse_args(["--base-model", "m", "--dataset", "d", "--output", "o"]).beta == 0.1
    eps = train_dpo.parse_args(["--base-model", "m", "--dataset", "d", "--output", "o", "--loss", "epsilon-dpo"])
    assert (eps.beta, eps.epsilon) == (0.01, 0.01)
    for bad in (["--epsilon", "1"], ["--beta", "0"], ["--beta", "nan"], ["--loss", "ipo"]):
        with pytest.raises(SystemExit):
            train_dpo.parse_args(["--base-model", "m", "--dataset", "d", "--output", "o", *bad])

