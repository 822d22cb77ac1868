"""Every bad input whose error message carries a number, sent to the compiled kernels of DEVICE (the
C++ ones here, the CUDA ones on a GPU): each message ends with the value it was given.

An extension carrying a private static libstdc++ drops those numbers (GCC 12's libstdc++: the
message stops at "got ") or segfaults while streaming them (GCC 13's), as the first GPU machine's
build did. The calls run in a child process, so a crash is one clear failure naming the case
reached, not a dead pytest worker. Run as a script, this file is that child.
"""

import json
import signal
import subprocess
import sys

import pytest

from conftest import NATIVE
from test_op_table import EPOCH, HIDDEN, IDS, INDEX, LABELS, OK, ROWS, SCORES, SPECIALS, _with
from fastmask import library, reference

# (op, argument position, bad value, how the message must end)
NUMBERED = [
    ("maskable_mask", 1, OK[:1].long(), "got [1, 6]"),
    ("maskable_mask", 2, SPECIALS[None], "got 2-D"),
    ("mask_tokens", 0, IDS[0], "got 1-D"),
    ("mask_tokens", 1, OK[:, :2], "got [2, 2]"),
    ("mask_tokens", 2, ROWS[:1], "must have shape (2,), got [1]"),
    ("mask_tokens", 4, EPOCH[None], "got shape [1]"),
    ("mask_tokens", 5, reference.PROB_ONE + 1, "got 16777217"),
    ("mask_tokens", 6, 21, "got 21"),
    ("mask_tokens", 7, 0, "got 0"),
    ("mask_tokens", 8, -1, "got -1"),
    ("mask_tokens", 9, reference.PROB_ONE, "got 16777216"),
    ("mask_tokens", 10, 10, "got 10"),
    ("mask_tokens", 11, 0, "got 0"),
    ("fully_explored_mask", 5, 0, "got 0"),
    ("fully_explored_mask", 10, 2**31, "got 2147483648"),
    ("masked_positions", 0, LABELS[0], "got 1-D"),
    ("masked_positions", 1, 0, "got 0"),
    ("gather_masked", 0, HIDDEN[0], "got 2-D"),
    ("gather_masked", 1, INDEX[0], "got 1-D"),
    ("gather_masked", 1, INDEX[:1], "index has batch 1 but hidden has batch 2"),
    ("scatter_masked", 1, INDEX[:, :2], "index has capacity 2 but values has 3 slots per row"),
    ("scatter_masked", 2, -1, "got -1"),
    ("proposal_mask", 1, SCORES[:1], "got [1, 6]"),
    ("proposal_mask", 7, 0, "got 0"),
    ("proposal_mask", 8, 1.5, "got 1.5"),
    ("proposal_mask", 9, 0.0, "got 0"),
    ("proposal_mask", 10, 3, "got 3"),
]
IDS_ = [f"{name}-{position}-{tail}" for name, position, _, tail in NUMBERED]


def child() -> None:
    """Calls every case, printing (index, error type, message) as a JSON line the moment it is known."""
    for index, (name, position, value, _) in enumerate(NUMBERED):
        try:
            library.op(name, NATIVE)(*_with(name, position, value))
            outcome = [index, None, "no error"]
        except (TypeError, ValueError, RuntimeError) as error:
            outcome = [index, type(error).__name__, str(error).splitlines()[0]]
        print(json.dumps(outcome), flush=True)


@pytest.fixture(scope="module")
def messages():
    """{case index: (error type, message)} from one child process, and how the child ended."""
    result = subprocess.run([sys.executable, __file__], capture_output=True, text=True, timeout=300)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("[")]
    ended = f"exit {result.returncode}" if result.returncode >= 0 else signal.Signals(-result.returncode).name
    return {index: (kind, text) for index, kind, text in lines}, ended, result.stderr[-2000:]


@pytest.mark.parametrize("index", range(len(NUMBERED)), ids=IDS_)
def test_message_ends_with_the_value_given(messages, index):
    found, ended, stderr = messages
    name, _, _, tail = NUMBERED[index]
    assert index in found, f"the child process died ({ended}) at or before this case of {NATIVE}'s {name}:\n{stderr}"
    kind, text = found[index]
    assert kind in ("TypeError", "ValueError"), f"{name}: {kind}: {text}"
    assert text.startswith(f"{name}: ") and text.endswith(tail), f"{text!r} does not end with {tail!r}"


if __name__ == "__main__":
    child()
