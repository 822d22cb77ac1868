"""fastmask.data.shards and loader: prepare into token shards (parallel, atomic, resumable, reused),
the rows read from them (equal to pack), the sources (.parquet, datasets folders), bad inputs,
permutations, the training batches of each rank and the prefetcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from fastmask import data  # noqa: E402
from fastmask.data import shards as shards_module  # noqa: E402
from fastmask.data.loader import Batches, Prefetcher  # noqa: E402
from fastmask.data.shards import Permutation, Shards, prepare_shards, token_dtype  # noqa: E402

SMALL_SHARDS = 20_000  # characters per shard in these tests: several shards from a small corpus


@pytest.fixture(scope="module")
def texts():
    return data.builtin_texts()[:1500]


@pytest.fixture(scope="module")
def tok(texts, tmp_path_factory):
    return data.train_tokenizer(texts, 400, str(tmp_path_factory.mktemp("tokcache")))


def _prepare(texts, out, tok, **kwargs):
    kwargs = {"source": "test", "corpus_name": "test", "workers": 2, "shard_chars": SMALL_SHARDS,
              "show_progress": False, **kwargs}
    return prepare_shards(lambda: iter(texts), out, tok, **kwargs)


def _fail(*_args, **_kwargs):
    raise AssertionError("a finished prepare should have made this call unnecessary")


# ---------------------------------------------------------------------------------- shards and rows


@pytest.mark.parametrize("shard_chars", [SMALL_SHARDS, shards_module.SHARD_CHARS], ids=["many-shards", "one-shard"])
def test_prepared_rows_equal_the_in_memory_packing(texts, tok, tmp_path, shard_chars):
    shards = _prepare(texts, tmp_path / "p", tok, shard_chars=shard_chars)
    index = json.loads((tmp_path / "p" / "index.json").read_text())
    assert (len(index["shards"]) > 5) == (shard_chars == SMALL_SHARDS)
    assert index["dtype"] == "uint16" and index["texts"] == len(texts)
    assert index["content_hash"] == data.cache._texts_hash(texts)
    for seq_len in (3, 17, 64, 500):  # rows that cross shard boundaries included
        rows = shards.rows(seq_len)
        assert torch.equal(torch.from_numpy(rows.take(np.arange(rows.n))), data.pack(texts, tok, seq_len))
    # The index of documents: each document's first token follows a [SEP] (or starts the shard).
    for record in index["shards"]:
        stream = np.fromfile(tmp_path / "p" / record["file"], dtype=np.uint16)
        starts = np.load(tmp_path / "p" / record["file"].replace(".tokens", ".docs.npy"))
        assert len(starts) == record["documents"] and starts[0] == 0 and stream[-1] == tok.sep_token_id
        assert (stream[starts[1:] - 1] == tok.sep_token_id).all()
        assert (np.count_nonzero(stream == tok.sep_token_id) == record["documents"])
    assert sum(r["documents"] for r in index["shards"]) == index["documents"]
    assert shards.tokenizer().get_vocab() == tok.get_vocab()  # the folder's own copy
    assert not list((tmp_path / "p").glob(".*"))  # no temporary file left


def test_the_worker_count_does_not_change_the_shards(texts, tok, tmp_path):
    one = json.loads((_prepare(texts, tmp_path / "one", tok, workers=1).folder / "index.json").read_text())
    two = json.loads((_prepare(texts, tmp_path / "two", tok, workers=2).folder / "index.json").read_text())
    assert one["shards"] == two["shards"] and one["workers"] == 1 and two["workers"] == 2


def test_an_interrupted_prepare_continues_where_it_stopped(texts, tok, tmp_path, monkeypatch):
    whole = _prepare(texts, tmp_path / "whole", tok)

    def stopping():  # the reader is stopped (Ctrl-C) two thirds of the way in
        for i, text in enumerate(texts):
            if i == 2 * len(texts) // 3:
                raise KeyboardInterrupt
            yield text

    out = tmp_path / "p"
    with pytest.raises(KeyboardInterrupt):
        prepare_shards(stopping, out, tok, source="test", corpus_name="test", workers=2, shard_chars=SMALL_SHARDS,
                       show_progress=False)
    assert not (out / "index.json").exists() and (out / "prepare.json").exists()
    assert not list(out.glob(".*"))  # only whole files
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.json")}
    assert len(done) >= 3
    resumed = _prepare(texts, out, tok)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.json") if p.name in done} == done  # not redone
    assert resumed.index["shards"] == whole.index["shards"]
    assert torch.equal(torch.from_numpy(resumed.rows(32).take(np.arange(resumed.rows(32).n))),
                       torch.from_numpy(whole.rows(32).take(np.arange(whole.rows(32).n))))


def test_a_killed_prepare_continues(texts, tok, tmp_path):
    """SIGKILL in the middle of a shard (a worker process dies mid-write): the rerun finishes it."""
    out = tmp_path / "p"
    tok.save_pretrained(str(tmp_path / "tok"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(t.replace("\n", " ") for t in texts * 4) + "\n")
    script = (f"import os, fastmask.data.shards as s\n"
              f"real = s._tokenize_shard\n"
              f"def dying(k, *a):\n"
              f"    if k == 4: os.kill(os.getppid(), 9); os.kill(os.getpid(), 9)\n"
              f"    return real(k, *a)\n"
              f"s._tokenize_shard = dying\n"
              f"from fastmask import data\n"
              f"data.prepare_folder({str(corpus)!r}, {str(out)!r}, {str(tmp_path / 'tok')!r}, workers=1, "
              f"shard_chars={SMALL_SHARDS}, show_progress=False)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert not (out / "index.json").exists() and 1 <= len(list(out.glob("shard-*.json"))) <= 4
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.json")}
    data.prepare_folder(str(corpus), out, str(tmp_path / "tok"), workers=1, shard_chars=SMALL_SHARDS,
                        show_progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.json") if p.name in done} == done
    expected = data.pack(data.load_texts(str(corpus)), data.load_tokenizer(tmp_path / "tok"), 64)
    rows = Shards(out).rows(64)
    assert torch.equal(torch.from_numpy(rows.take(np.arange(rows.n))), expected)


def test_a_finished_prepare_is_reused_and_other_folders_refused(texts, tok, tmp_path, monkeypatch, capsys):
    out = tmp_path / "p"
    first = _prepare(texts, out, tok, show_progress=True)
    assert "prepared" in capsys.readouterr().err
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    monkeypatch.setattr(shards_module, "_tokenize", _fail)
    again = _prepare(texts, out, tok, show_progress=True)
    assert "reused" in capsys.readouterr().err and again.index == first.index
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    other = data.train_tokenizer(texts, 300, str(tmp_path / "c"))
    with pytest.raises(ValueError, match="finished prepare of another corpus or tokenizer"):
        _prepare(texts, out, other)
    with pytest.raises(ValueError, match="finished prepare of another corpus or tokenizer"):
        _prepare(texts, out, tok, source="another corpus")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing changed

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a fastmask prepare"):
        _prepare(texts, foreign, tok)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        _prepare(texts, tmp_path / "file", tok)


def test_an_unfinished_prepare_of_another_source_starts_again(texts, tok, tmp_path):
    out = tmp_path / "p"

    def stopping():
        yield from texts[: len(texts) // 2]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_shards(stopping, out, tok, source="old", corpus_name="old", workers=1, shard_chars=SMALL_SHARDS,
                       show_progress=False)
    assert list(out.glob("shard-*.json"))
    fresh = _prepare(texts[:100], out, tok, source="new")
    assert fresh.index["texts"] == 100 and len(list(out.glob("shard-*.json"))) == len(fresh.index["shards"])


# --------------------------------------------------------------------------------------- bad inputs


def _no_shards(path) -> bool:
    return not path.exists() or not list(path.glob("shard-*")) and not list(path.glob(".*"))


def test_bad_corpora_are_clear_errors_and_leave_no_shard(tok, tmp_path):
    tok.save_pretrained(str(tmp_path / "tok"))
    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "good.txt").write_text("fine text\n")
    os.symlink(tmp_path / "gone.txt", tmp_path / "d" / "broken.txt")  # listed, but cannot be opened
    (tmp_path / "col.jsonl").write_text('{"body": "text in another field"}\n')
    cases = [
        (tmp_path / "empty.txt", {}, "empty corpus"),
        (tmp_path / "d", {}, "cannot read"),
        (tmp_path / "col.jsonl", {}, 'has no "text" string field'),
        (tmp_path / "missing.txt", {}, "no such file"),
    ]
    for corpus, kwargs, message in cases:
        out = tmp_path / f"out-{corpus.name}"
        with pytest.raises(ValueError, match=message) as info:
            data.prepare_folder(str(corpus), out, str(tmp_path / "tok"), show_progress=False, **kwargs)
        assert str(corpus) in str(info.value)
        assert not out.exists(), corpus
    with pytest.raises(ValueError, match="--workers"):
        data.prepare_folder(None, tmp_path / "w", str(tmp_path / "tok"), workers=0, show_progress=False)
    assert not (tmp_path / "w").exists()
    # The right column reads.
    shards = data.prepare_folder(str(tmp_path / "col.jsonl"), tmp_path / "body", str(tmp_path / "tok"),
                                 text_column="body", show_progress=False)
    assert shards.index["texts"] == 1


def test_a_vocabulary_beyond_uint32_is_refused_before_anything_is_written(tok, tmp_path):
    assert token_dtype(1 << 16) == np.uint16 and token_dtype((1 << 16) + 1) == np.uint32
    assert token_dtype(1 << 32) == np.uint32
    with pytest.raises(ValueError, match="do not fit a uint32"):
        token_dtype((1 << 32) + 1)

    class Huge:  # a tokenizer's interface as prepare reads it, with 2^32 + 1 tokens
        cls_token_id, sep_token_id = tok.cls_token_id, tok.sep_token_id

        def __len__(self):
            return (1 << 32) + 1

    with pytest.raises(ValueError, match="do not fit a uint32"):
        prepare_shards(lambda: iter(["text"]), tmp_path / "p", Huge(), source="t", corpus_name="t",
                       show_progress=False)
    assert not (tmp_path / "p").exists()


def test_a_large_vocabulary_is_stored_as_uint32(texts, tmp_path):
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
    vocab.update({f"w{i}": len(vocab) + i for i in range(70_000)})
    vocab["text"] = len(vocab)  # 70_005: an id above 2^16
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    big = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")
    shards = _prepare(["text some text"] * 10, tmp_path / "p", big)
    assert shards.dtype == np.uint32 and shards.index["dtype"] == "uint32"
    rows = shards.rows(5)
    assert torch.equal(torch.from_numpy(rows.take(np.arange(rows.n))), data.pack(["text some text"] * 10, big, 5))
    assert int(rows.take(np.arange(rows.n)).max()) == 70_005


# ------------------------------------------------------------------------------------------ sources


def test_parquet_and_saved_datasets_read_like_jsonl(texts, tok, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    docs = [t for t in texts[:200]]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    pq.write_table(pa.table({"id": list(range(len(docs))), "text": docs}), tmp_path / "c.parquet", row_group_size=37)
    assert data.load_texts(str(tmp_path / "c.parquet")) == data.load_texts(str(tmp_path / "c.jsonl"))
    with pytest.raises(ValueError, match=r"has no 'body' column \(columns: id, text"):
        data.load_texts(str(tmp_path / "c.parquet"), "body")
    with pytest.raises(ValueError, match="holds int64, not strings"):
        data.load_texts(str(tmp_path / "c.parquet"), "id")
    datasets = pytest.importorskip("datasets")
    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"body": docs, "n": list(range(len(docs)))}).save_to_disk(str(saved))
    assert data.load_texts(str(saved), "body") == data.load_texts(str(tmp_path / "c.jsonl"))
    with pytest.raises(ValueError, match="has no 'text' column"):
        data.load_texts(str(saved))
    dd = tmp_path / "dd"
    datasets.DatasetDict(train=datasets.Dataset.from_dict({"text": docs[:5]})).save_to_disk(str(dd))
    with pytest.raises(ValueError, match="DatasetDict; give one split's folder"):
        data.load_texts(str(dd))
    assert data.load_texts(str(dd / "train")) == docs[:5]
    shards = data.prepare_folder(str(saved), tmp_path / "p", None, 300, text_column="body",
                                 cache_dir=str(tmp_path / "cache"), show_progress=False)
    rows = shards.rows(32)
    assert torch.equal(torch.from_numpy(rows.take(np.arange(rows.n))), data.pack(docs, shards.tokenizer(), 32))


# ------------------------------------------------------------------------------ permutations, batches


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5000), key=st.integers(0, 2**40))
def test_a_permutation_is_a_bijection(n, key):
    order = Permutation(n, key)
    out = order(np.arange(n))
    assert sorted(out.tolist()) == list(range(n))
    assert order(np.array([n - 1, 0])).tolist() == [out[-1], out[0]]  # position by position, any subset


def test_permutations_differ_by_key_and_refuse_positions_outside():
    a, b = Permutation(1000, 1)(np.arange(1000)), Permutation(1000, 2)(np.arange(1000))
    assert not np.array_equal(a, b) and not np.array_equal(a, np.arange(1000))
    assert np.array_equal(a, Permutation(1000, 1)(np.arange(1000)))
    with pytest.raises(IndexError):
        Permutation(10, 0)(np.array([10]))
    with pytest.raises(IndexError):
        Permutation(10, 0)(np.array([-1]))


@pytest.fixture(scope="module")
def train_rows(texts, tok, tmp_path_factory):
    shards = _prepare(texts, tmp_path_factory.mktemp("rows") / "p", tok)
    return data.split(shards.rows(24), 0.05)[0]


def test_each_epoch_is_a_permutation_shared_out_among_the_ranks(train_rows):
    world, batch = 3, 7
    ranks = [Batches(train_rows, batch, seed=5, rank=r, world=world) for r in range(world)]
    per_epoch = ranks[0].per_epoch
    assert per_epoch == len(train_rows) // world // batch
    epochs = []
    for epoch in range(2):
        ids = np.concatenate([b.sample_ids(epoch * per_epoch + m)[1] for b in ranks for m in range(per_epoch)])
        assert {b.sample_ids(epoch * per_epoch)[0] for b in ranks} == {epoch}
        assert len(set(ids.tolist())) == len(ids) == per_epoch * world * batch  # no row twice in an epoch
        assert ids.max() < len(train_rows)
        epochs.append(ids)
    assert not np.array_equal(np.sort(epochs[0][:50]), np.sort(epochs[1][:50]))  # reshuffled per epoch
    batch3 = ranks[1](per_epoch + 3)
    assert batch3.data_epoch == 1 and torch.equal(batch3.rows, train_rows[batch3.sample_ids])
    assert torch.equal(ranks[1](per_epoch + 3).rows, batch3.rows)  # a pure function of the micro-step
    with pytest.raises(ValueError, match="too few"):
        Batches(train_rows, len(train_rows), seed=0, rank=0, world=2)


def test_every_process_reads_the_same_rows(train_rows):
    """Ranks map the same files: a second process reads byte-identical rows."""
    folder = train_rows.rows.shards.folder
    picks = [0, 5, len(train_rows) - 1]
    script = (f"import numpy as np; from fastmask import data\n"
              f"train = data.split(data.Shards({str(folder)!r}).rows(24), 0.05)[0]\n"
              f"print(train[{picks}].numpy().tobytes().hex())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == train_rows[picks].numpy().tobytes().hex()


def test_the_prefetcher_serves_the_batches_in_order_and_stops(train_rows):
    batches = Batches(train_rows, 4, seed=1, rank=0, world=1)
    with Prefetcher(batches, first=10, depth=3) as loader:
        served = [next(loader) for _ in range(batches.per_epoch + 2)]
    for m, batch in enumerate(served, 10):
        expected = batches(m)
        assert batch.data_epoch == expected.data_epoch and torch.equal(batch.sample_ids, expected.sample_ids)
        assert torch.equal(batch.rows, expected.rows)
    assert not any(t.name == "fastmask-prefetch" for t in threading.enumerate())

    class Broken(Batches):
        def __call__(self, micro_step, pin=False):
            if micro_step == 2:
                raise OSError("disk gone")
            return super().__call__(micro_step, pin)

    with Prefetcher(Broken(train_rows, 4, seed=1, rank=0, world=1), first=0) as loader:
        next(loader), next(loader)
        with pytest.raises(OSError, match="disk gone"):
            next(loader)


def test_the_data_benchmark_measures_prepare_and_the_loader(tmp_path, tok):
    """bench/bench_data.py's prepare and loader measurements on a small corpus (its pretrain runs are
    `fastmask pretrain` runs, tested in test_pretrain)."""
    pytest.importorskip("datasets")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
    try:
        import bench_data
        import harness
    finally:
        sys.path.pop(0)
    corpus = bench_data.generated_corpus(str(tmp_path / "c.txt"), 1)
    assert 1_000_000 <= os.path.getsize(corpus) < 1_010_000
    tok.save_pretrained(str(tmp_path / "tok"))
    rows = bench_data.bench_prepare(corpus, str(tmp_path / "tok"), str(tmp_path), "1MB", torch.device("cpu"))
    assert [r.backend for r in rows] == ["tokenizer-alone", "fastmask-1w", "fastmask-2w"]
    assert all(r.metrics["tokens_per_s"] > 0 for r in rows)
    loader = bench_data.bench_loader(str(tmp_path / "prepared-2"), str(tmp_path / "tok"), torch.device("cpu"),
                                     harness.PROFILES["quick"])
    assert [r.backend for r in loader] == ["hf-data-pipeline", "fastmask"]
    for r in loader:
        assert r.metrics["rows_per_s"] > 0 and abs(r.metrics["tokens_per_s"] - 128 * r.metrics["rows_per_s"]) <= 128
