"""What every stage shares: the cache (its folder; atomic writes, so concurrent or interrupted runs
never leave a half-written file; the hashes its keys are made of), the log lines and whether
progress bars are drawn."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Iterable


def _log(show: bool, message: str) -> None:
    if show:
        print(f"fastmask: {message}", file=sys.stderr, flush=True)


def progress_bars(show: bool) -> bool:
    """Whether to draw progress bars (data stages, training): when asked for and stderr is a
    terminal. Elsewhere (a log file, Slurm, nohup) a bar redrawn with \\r is noise: plain lines only."""
    return show and sys.stderr.isatty()


def _progress(iterable, show: bool, **kwargs):
    if not progress_bars(show):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, leave=False, dynamic_ncols=True, **kwargs)


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:24]


def _hash_text(h, text: str) -> None:
    """Adds one text to a content hash (length-prefixed, so document boundaries count)."""
    b = text.encode("utf-8", "surrogatepass")
    h.update(len(b).to_bytes(8, "little"))
    h.update(b)


def _texts_hash(texts: Iterable[str]) -> str:
    """Content hash of a sequence of texts."""
    h = hashlib.sha256()
    for text in texts:
        _hash_text(h, text)
    return h.hexdigest()[:24]


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get("FASTMASK_CACHE") or os.path.join("~", ".cache", "fastmask")
    return Path(cache_dir).expanduser()


def _atomic_write(path: Path, write: Callable[[str], None], *, overwrite: bool = True) -> bool:
    """Writes via ``write(tmp_path)`` then renames; a cache that cannot be written only warns.

    ``overwrite=False`` publishes with a hard link, which fails if ``path`` exists: the first writer
    wins, so processes racing to create the same entry all end up reading one file.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a cache is fine to share read-only
        if overwrite:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False  # another process published first: keep theirs
        except OSError:  # a file system without hard links
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    except Exception as e:  # OSError, or whatever torch.save / tokenizers raise on a full disk
        warnings.warn(f"fastmask: could not write cache file {path}: {e}", stacklevel=3)
        return False
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _write_text(path: Path, text: str) -> bool:
    return _atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
