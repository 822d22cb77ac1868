"""fastmask.data: built-in corpus, corpus files, WordPiece tokenizer and its cache, packing, split, prepare."""

from __future__ import annotations

import json
import sys
from collections import Counter

import numpy as np
import pytest
import torch

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from fastmask import data  # noqa: E402

SENTENCE = "The function returns a new list of strings when the argument is not None."


@pytest.fixture(scope="module")
def texts():
    return data.builtin_texts()


@pytest.fixture(scope="module")
def small_texts(texts):
    return texts[:800]  # enough for a 300-token vocabulary, trains in well under a second


@pytest.fixture(scope="module")
def tok(small_texts, tmp_path_factory):
    return data.train_tokenizer(small_texts, 300, str(tmp_path_factory.mktemp("tokcache")))


def _fail(*_args, **_kwargs):
    raise AssertionError("the cache should have made this call unnecessary")


# ------------------------------------------------------------------------------------ builtin corpus


def test_builtin_texts_are_english_docstrings(texts):
    assert len(texts) > 1000
    assert sum(map(len, texts)) > 500_000  # ~1.5 MB on CPython 3.11
    assert all(isinstance(t, str) and len(t.split()) >= data.corpus._MIN_WORDS for t in texts)
    words = Counter(w.lower() for t in texts for w in t.split())
    for common in ("the", "of", "a", "is", "to", "return", "and"):
        assert words[common] > 100, common
    # Docstrings are cleaned (inspect.cleandoc): no leading indentation, no surrounding blank space.
    assert all(t == t.strip() for t in texts)
    # ast-read, never imported: importing these has side effects (a browser, printing the Zen).
    assert "antigravity" not in sys.modules and "this" not in sys.modules


def test_builtin_texts_deterministic_and_a_fresh_list(texts):
    fresh, failed = data.corpus._read_stdlib()  # a real second parse, not the in-process memo
    assert fresh == texts
    assert failed == 0
    again = data.builtin_texts()
    again.append("mutated")
    assert data.builtin_texts() == texts


def test_stdlib_reader_skips_dirs_and_counts_bad_files(tmp_path, monkeypatch):
    doc = "This module docstring has more than eight words in it, surely."
    (tmp_path / "b_good.py").write_text(
        f'"""{doc}"""\n\nclass C:\n    """Short."""\n\n    def f(self):\n'
        '        """A method docstring that is long enough to be kept as a text."""\n'
    )
    (tmp_path / "a_broken.py").write_text("def broken(:\n")
    for skipped in ("tests", "test", "site-packages", "idlelib"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "mod.py").write_text('"""A docstring in a directory that must be skipped entirely."""\n')
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text('"""A package module docstring that is long enough to keep."""\n')
    monkeypatch.setattr(data.corpus, "_stdlib_root", lambda: tmp_path)
    texts, failed = data.corpus._read_stdlib()
    assert failed == 1
    assert texts == [
        doc,
        "A method docstring that is long enough to be kept as a text.",
        "A package module docstring that is long enough to keep.",
    ]


def test_corpus_fingerprint_tracks_sources(tmp_path, monkeypatch):
    monkeypatch.setattr(data.corpus, "_stdlib_root", lambda: tmp_path)
    (tmp_path / "m.py").write_text('"""First version of a module docstring with enough words."""\n')
    before = data.corpus._corpus_fingerprint(None)
    assert data.corpus._corpus_fingerprint(None) == before
    (tmp_path / "m.py").write_text('"""Second, longer version of a module docstring with enough words."""\n')
    assert data.corpus._corpus_fingerprint(None) != before

    corpus = tmp_path / "c.txt"
    corpus.write_text("one\n")
    first = data.corpus._corpus_fingerprint(str(corpus))
    corpus.write_text("two\n")
    assert data.corpus._corpus_fingerprint(str(corpus)) != first


# -------------------------------------------------------------------------------------- corpus files


def test_load_texts_txt_dir_jsonl(tmp_path, texts):
    txt = tmp_path / "a.txt"
    txt.write_text("  first document  \n\nsecond document\n   \n", encoding="utf-8")
    assert data.load_texts(str(txt)) == ["first document", "second document"]

    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text(json.dumps({"text": "json one", "id": 1}) + "\n\n" + json.dumps({"text": "json two"}) + "\n")
    assert data.load_texts(str(jsonl)) == ["json one", "json two"]

    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    (d / ".hidden").mkdir()
    (d / "z.txt").write_text("zeta\n")
    (d / "sub" / "m.md").write_text("# markdown line\n")
    (d / "sub" / "n.jsonl").write_text('{"text": "nested json"}\n')
    (d / "a.txt").write_text("alpha\nbeta\n")
    (d / "ignored.csv").write_text("not,a,document\n")
    (d / ".hidden" / "h.txt").write_text("hidden\n")
    # Sorted by relative path: a.txt, sub/m.md, sub/n.jsonl, z.txt.
    assert data.load_texts(str(d)) == ["alpha", "beta", "# markdown line", "nested json", "zeta"]

    assert data.load_texts(None) == texts


def _write(name: str, content: bytes | str):
    def setup(p):
        (p / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (p / name).write_bytes(content)
        else:
            (p / name).write_text(content, encoding="utf-8")
        return p / name if "/" not in name else p / name.split("/")[0]

    return setup


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda p: p / "nope.txt", "no such file or directory"),
        (_write("empty.txt", "\n  \n"), "empty corpus"),
        (_write("d/x.csv", "a\n"), "empty corpus"),
        (_write("latin1.txt", "caf\xe9\n".encode("latin-1")), "latin1.txt is not UTF-8"),
        (_write("bad.jsonl", '{"text": "ok"}\n{not json}\n'), "bad.jsonl line 2 is not valid JSON"),
        (_write("nt.jsonl", '{"text": "ok"}\n\n{"body": "x"}\n'), 'nt.jsonl line 3 has no "text" string'),
        (_write("num.jsonl", '{"text": 5}\n'), 'num.jsonl line 1 has no "text" string'),
        (_write("list.jsonl", '["text"]\n'), 'list.jsonl line 1 has no "text" string'),
    ],
    ids=["missing", "empty-file", "empty-dir", "not-utf8", "bad-json", "no-text", "text-not-str", "not-object"],
)
def test_load_texts_errors(tmp_path, setup, expected):
    path = setup(tmp_path)
    with pytest.raises(ValueError) as info:
        data.load_texts(str(path))
    message = str(info.value)
    assert expected in message
    assert str(path) in message  # names the corpus


def test_not_utf8_inside_a_directory_names_the_file(tmp_path):
    (tmp_path / "good.txt").write_text("fine\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bad.md").write_bytes(b"\xff\xfe oops\n")
    with pytest.raises(ValueError, match=r"bad\.md is not UTF-8"):
        data.load_texts(str(tmp_path))


# ----------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_specials_and_wordpiece_round_trip(tok):
    assert [tok.convert_tokens_to_ids(t) for t in data.SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (0, 1, 2, 3, 4)
    assert len(tok) == 300
    ids = tok(SENTENCE, add_special_tokens=False)["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    assert any(p.startswith("##") for p in pieces)  # a 300-token vocabulary must split words
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == SENTENCE.lower()  # lowercasing normalizer, WordPiece decoder
    with_specials = tok(SENTENCE)["input_ids"]
    assert with_specials == [tok.cls_token_id, *ids, tok.sep_token_id]


def test_tokenizer_cache_hit_skips_training(small_texts, tmp_path, monkeypatch):
    first = data.train_tokenizer(small_texts, 300, str(tmp_path))
    files = sorted(tmp_path.glob("tokenizer-*.json"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    mtime = files[0].stat().st_mtime_ns

    monkeypatch.setattr(data.tokenizer, "_train_backend", _fail)
    second = data.train_tokenizer(list(small_texts), 300, str(tmp_path))
    assert second.get_vocab() == first.get_vocab()
    assert second.mask_token_id == 4
    assert files[0].stat().st_mtime_ns == mtime

    # The key covers the vocabulary size and the texts' content.
    with pytest.raises(AssertionError, match="cache"):
        data.train_tokenizer(small_texts, 301, str(tmp_path))
    with pytest.raises(AssertionError, match="cache"):
        data.train_tokenizer(small_texts[:-1] + [small_texts[-1] + " changed"], 300, str(tmp_path))


def test_tokenizer_training_is_deterministic(small_texts, tmp_path):
    """The trainer breaks frequency ties in hash-map order (different on every training, also in
    one process); canonical ids make fresh caches give the same tokenizer."""
    trained = [data.train_tokenizer(small_texts, 300, str(tmp_path / f"cache{i}")).get_vocab() for i in range(4)]
    assert all(vocab == trained[0] for vocab in trained[1:])


def test_tokenizer_first_published_wins_and_corrupt_cache_retrains(small_texts, tmp_path, monkeypatch):
    data.train_tokenizer(small_texts, 300, str(tmp_path / "a"))
    (file_name,) = [p.name for p in (tmp_path / "a").glob("tokenizer-*.json")]
    # Another process (say another rank) publishes its tokenizer while this one is training: WordPiece
    # training is not deterministic, so this one must return the published file, not its own result.
    other = data.tokenizer._train_backend(small_texts[200:], 300, False)
    real_train = data.tokenizer._train_backend

    def racing_train(*args, **kwargs):
        backend = real_train(*args, **kwargs)
        other.save(str(tmp_path / "b" / file_name))
        return backend

    (tmp_path / "b").mkdir()
    monkeypatch.setattr(data.tokenizer, "_train_backend", racing_train)
    won = data.train_tokenizer(small_texts, 300, str(tmp_path / "b"))
    assert won.get_vocab() == other.get_vocab()
    assert not list((tmp_path / "b").glob("*.tmp"))

    monkeypatch.setattr(data.tokenizer, "_train_backend", real_train)
    (tmp_path / "b" / file_name).write_text("not a tokenizer")
    with pytest.warns(UserWarning, match="unreadable cached tokenizer"):
        retrained = data.train_tokenizer(small_texts, 300, str(tmp_path / "b"))
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(tmp_path / "b" / file_name)).get_vocab() == retrained.get_vocab()


def test_tokenizer_cache_dir_from_environment(small_texts, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path / "envcache"))
    data.train_tokenizer(small_texts[:200], 120, None)
    assert len(list((tmp_path / "envcache").glob("tokenizer-*.json"))) == 1


def test_load_tokenizer(tok, tmp_path):
    tok.save_pretrained(str(tmp_path / "tok"))
    loaded = data.load_tokenizer(str(tmp_path / "tok"))
    assert loaded.get_vocab() == tok.get_vocab()
    assert loaded(SENTENCE)["input_ids"] == tok(SENTENCE)["input_ids"]
    assert data.tokenizer._tokenizer_identity(loaded) == data.tokenizer._tokenizer_identity(tok)

    with pytest.raises(ValueError, match="not a directory"):
        data.load_tokenizer(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot be loaded"):
        data.load_tokenizer(str(tmp_path / "empty"))

    from transformers import PreTrainedTokenizerFast

    no_mask = PreTrainedTokenizerFast(
        tokenizer_object=tok.backend_tokenizer, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    no_mask.save_pretrained(str(tmp_path / "nomask"))
    with pytest.raises(ValueError, match="lacks a mask token"):
        data.load_tokenizer(str(tmp_path / "nomask"))


# ------------------------------------------------------------------------------------------- packing


def test_pack_layout(tok, small_texts):
    # Documents with no tokens add nothing (not a lone [SEP]).
    docs = ["", *small_texts[:50], "   ", *small_texts[50:100]]
    seq_len = 48
    rows = data.pack(docs, tok, seq_len)
    stream = []
    for d in docs:
        ids = tok(d, add_special_tokens=False)["input_ids"]
        if ids:
            stream += ids + [tok.sep_token_id]
    n = len(stream) // (seq_len - 2)
    assert n > 10
    assert rows.dtype == torch.int32 and rows.shape == (n, seq_len)
    assert (rows[:, 0] == tok.cls_token_id).all() and (rows[:, -1] == tok.sep_token_id).all()
    assert rows[:, 1:-1].flatten().tolist() == stream[: n * (seq_len - 2)]  # in order, ragged tail dropped
    assert not (rows[:, 1:-1] == tok.cls_token_id).any()
    assert int(rows.min()) >= 0 and int(rows.max()) < len(tok)


def test_pack_errors(tok):
    with pytest.raises(ValueError, match="corpus too small for seq_len 64"):
        data.pack(["a tiny corpus"], tok, 64)
    with pytest.raises(ValueError, match="corpus too small"):
        data.pack([], tok, 8)
    with pytest.raises(ValueError, match="seq_len"):
        data.pack(["text"] * 10, tok, 2)
    one = data.pack(["abc def ghi"], tok, 3)  # seq_len 3: one stream token per row
    assert one.shape[1] == 3 and one.shape[0] >= 4  # three words (>= 1 piece each) + [SEP]


# -------------------------------------------------------------------------------- split and dataset


def _rows_of(tmp_path, texts, tok, seq_len):
    shards = data.prepare_shards(lambda: texts, tmp_path / "shards", tok, source="test", corpus_name="test",
                                 workers=1, show_progress=False)
    return shards.rows(seq_len)


def test_split_sizes_and_determinism(tmp_path, small_texts, tok):
    rows = _rows_of(tmp_path, small_texts, tok, 16)
    n = rows.n
    train, held = data.split(rows, 0.1, seed=3)
    assert len(train) + len(held) == n and len(held) == round(n * 0.1) and held.shape == (len(held), 16)
    numbers = np.concatenate([train.row_numbers(np.arange(len(train))), held.row_numbers(np.arange(len(held)))])
    assert sorted(numbers.tolist()) == list(range(n))  # a partition
    assert held.row_numbers(np.arange(len(held))).tolist() != list(range(n - len(held), n))  # shuffled, not the tail
    assert torch.equal(held[:], torch.from_numpy(rows.take(held.row_numbers(np.arange(len(held))))))
    again_train, again_held = data.split(rows, 0.1, seed=3)
    assert torch.equal(again_train[:], train[:]) and torch.equal(again_held[:], held[:])
    _, other = data.split(rows, 0.1, seed=4)
    assert not torch.equal(other[:], held[:])
    # Indexing: ints, slices, arrays and tensors of any shape, and a column index.
    assert torch.equal(train[3], train[:][3]) and torch.equal(train[[5, 1]], train[:][[5, 1]])
    index = torch.tensor([[0, 2], [4, 6]])
    assert train[index].shape == (2, 2, 16) and torch.equal(train[index, :5], train[:][index][..., :5])
    with pytest.raises(IndexError):
        train[[len(train)]]

    assert len(data.split(rows, 1e-9)[1]) == 1  # at least one held-out row
    train0, held0 = data.split(rows, 0.0)
    assert torch.equal(train0[:], torch.from_numpy(rows.take(train0.row_numbers(np.arange(n))))) and len(held0) == 0
    with pytest.raises(ValueError, match="eval_fraction"):
        data.split(rows, 1.0)
    one = rows.shards.rows(rows.shards.tokens + 2)  # a single row holds the whole stream
    assert one.n == 1
    with pytest.raises(ValueError, match="at least 2"):
        data.split(one, 0.5)


# ------------------------------------------------------------------------------------------ prepare


def test_prepare_builtin_twice_uses_the_cache(tmp_path, monkeypatch, capsys):
    first = data.prepare(None, None, 300, 64, 0.05, str(tmp_path), show_progress=True)
    assert "fastmask:" in capsys.readouterr().err
    assert len(first.tokenizer) == 300 and first.tokenizer.mask_token_id == 4
    for rows in (first.train, first.eval):
        rows = rows[:]
        assert rows.dtype == torch.int32 and rows.shape[1] == 64
        assert (rows[:, 0] == 2).all() and (rows[:, -1] == 3).all()
    n = len(first.train) + len(first.eval)
    assert n > 1000 and len(first.eval) == round(n * 0.05)
    assert torch.equal(torch.from_numpy(first.shards.rows(64).take(np.arange(n))),
                       data.pack(data.builtin_texts(), first.tokenizer, 64))  # today's packing
    names = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert names == ["corpus", "shards", "tokenizer"]

    # Warm run: no reading, parsing, training or tokenizing (each patched in the module that calls it).
    for module, name in (
        (data.corpus, "iter_texts"),
        (data.corpus, "_read_stdlib"),
        (data.tokenizer, "_train_backend"),
        (data.shards, "_tokenize"),
    ):
        monkeypatch.setattr(module, name, _fail)
    second = data.prepare(None, None, 300, 64, 0.05, str(tmp_path), show_progress=False)
    assert capsys.readouterr().err == ""
    assert torch.equal(second.train[:], first.train[:]) and torch.equal(second.eval[:], first.eval[:])
    assert second.tokenizer.get_vocab() == first.tokenizer.get_vocab()
    # Neither eval_fraction nor seq_len is part of the shards' key: rows are cut when read.
    third = data.prepare(None, None, 300, 32, 0.2, str(tmp_path), show_progress=False)
    assert len(third.train) + len(third.eval) == first.shards.tokens // 30


def test_prepare_corpus_file_invalidation_and_tokenizer_path(small_texts, tok, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(t.replace("\n", " ") for t in small_texts[:300]) + "\n", encoding="utf-8")
    cache = tmp_path / "cache"
    a = data.prepare(str(corpus), None, 200, 32, 0.1, str(cache), show_progress=False)
    assert len(a.eval) >= 1 and len(a.tokenizer) == 200

    # Changed content: new texts hash, so a new tokenizer and new shards.
    with corpus.open("a", encoding="utf-8") as f:
        f.write("an extra document appended to the corpus file changes its hash\n")
    b = data.prepare(str(corpus), None, 200, 32, 0.1, str(cache), show_progress=False)
    assert len(list(cache.glob("tokenizer-*.json"))) == 2 and len(list(cache.glob("shards-*"))) == 2
    assert len(b.train) + len(b.eval) >= len(a.train) + len(a.eval)
    monkeypatch.setattr(data.shards, "_tokenize", _fail)
    b2 = data.prepare(str(corpus), None, 200, 32, 0.1, str(cache), show_progress=False)
    assert torch.equal(b2.train[:], b.train[:])
    monkeypatch.undo()

    # A given tokenizer directory: no training; shards keyed by that tokenizer.
    tok.save_pretrained(str(tmp_path / "tok"))
    monkeypatch.setattr(data.tokenizer, "_train_backend", _fail)
    c = data.prepare(str(corpus), str(tmp_path / "tok"), 0, 32, 0.1, str(cache), show_progress=False)
    assert c.tokenizer.get_vocab() == tok.get_vocab()
    rows = torch.cat([c.train[:], c.eval[:]])
    assert int(rows.max()) < len(tok)
    assert len(list(cache.glob("shards-*"))) == 3

    # A prepared folder is read as it is: its own tokenizer, no corpus read; another tokenizer is refused.
    monkeypatch.setattr(data.corpus, "iter_texts", _fail)
    folder = c.shards.folder
    d = data.prepare(str(folder), None, 0, 32, 0.1, None, show_progress=False)
    assert d.tokenizer.get_vocab() == tok.get_vocab() and torch.equal(d.train[:], c.train[:])
    assert torch.equal(data.prepare(str(folder), str(tmp_path / "tok"), 0, 32, 0.1, None, False).eval[:], c.eval[:])
    with pytest.raises(ValueError, match="prepared with another tokenizer"):
        data.prepare(str(folder), str(a.shards.folder / "tokenizer"), 0, 32, 0.1, None, show_progress=False)


def test_progress_bars_only_on_a_terminal(small_texts, tmp_path, capfd, monkeypatch):
    """Off a terminal (a log file, Slurm, nohup) every stage prints plain lines: no \\r-redrawn bars,
    no blank lines from the tokenizer trainer. On a terminal the bars are drawn."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(2):  # two files: reading them has a bar too
        (corpus / f"part{i}.txt").write_text("\n".join(small_texts[i::2]), encoding="utf-8")
    data.prepare(str(corpus), None, 200, 32, 0.1, str(tmp_path / "cache"), show_progress=True)
    out, err = capfd.readouterr()
    assert out == ""  # the tokenizer trainer's bar draws blank lines on stdout
    lines = err.split("\n")
    assert lines[-1] == "" and all(line.startswith("fastmask: ") for line in lines[:-1]), repr(err)
    assert any("training a WordPiece tokenizer" in line for line in lines) and any("prepared" in line for line in lines)

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    data.prepare(str(corpus), None, 300, 32, 0.1, str(tmp_path / "cache2"), show_progress=True)
    err = capfd.readouterr().err
    assert "\rreading corpus:" in err and "\rprepare:" in err


def test_prepare_validates_before_work(tmp_path):
    with pytest.raises(ValueError, match="seq_len"):
        data.prepare(None, None, 300, 2, 0.1, str(tmp_path), show_progress=False)
    with pytest.raises(ValueError, match="eval_fraction"):
        data.prepare(None, None, 300, 64, 1.5, str(tmp_path), show_progress=False)
    with pytest.raises(ValueError, match="vocab_size"):
        data.prepare(None, None, 3, 64, 0.1, str(tmp_path), show_progress=False)
    with pytest.raises(ValueError, match="no such file"):
        data.prepare(str(tmp_path / "missing"), None, 300, 64, 0.1, str(tmp_path), show_progress=False)
    assert list(tmp_path.iterdir()) == []
