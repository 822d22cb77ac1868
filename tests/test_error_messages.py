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

from conftest import DEVICE, NATIVE
from fastmask import library

# The op table's bad cases whose message carries a number (tests/test_op_table.py sends them all to
# every entry point), the arguments on DEVICE, and how that message must end.
NUMBERED = [(name, position, args, case.tail) for name, position, case, args in library.bad_calls(DEVICE)
            if case.tail is not None]


def child() -> None:
    """Calls every case, printing (index, error type, message) as a JSON line the moment it is known."""
    for index, (name, _, args, _) in enumerate(NUMBERED):
        try:
            library.op(name, NATIVE)(*args)
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


@pytest.mark.parametrize("index", range(len(NUMBERED)), ids=[f"{n}-{p}-{t}" for n, p, _, t in NUMBERED])
def test_message_ends_with_the_value_given(messages, index):
    found, ended, stderr = messages
    name, _, _, tail = NUMBERED[index]
    assert index in found, f"the child process died ({ended}) at or before this case of {NATIVE}'s {name}:\n{stderr}"
    kind, text = found[index]
    assert kind in ("TypeError", "ValueError"), f"{name}: {kind}: {text}"
    assert text.startswith(f"{name}: ") and text.endswith(tail), f"{text!r} does not end with {tail!r}"


if __name__ == "__main__":
    child()
