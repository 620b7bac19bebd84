"""Fuzzed stimulus manifests (CSV / JSONL) end in a stimulus list or one LeapsError, quickly.

Broken rows, wrong encodings, huge fields, NUL bytes and binary junk: each of the cases (a fixed
seed) must give a result or a :class:`leaps.errors.LeapsError` within a time limit.
"""

from __future__ import annotations

import random
import signal
import time

import pytest

from leaps.errors import LeapsError
from leaps.sweep.stimuli import load_stimulus_set
from leaps.toy.data import TOY_CLASSES

SEED = 2024
CASE_SECONDS = 5

CSV_BASE = b"path,label\nclips/a.mp4,ring growing\nclips/b.mp4,3\n"
JSONL_BASE = b'{"path": "clips/a.mp4", "label": "ring growing"}\n{"path": "clips/b.mp4", "label": 3}\n'

CRAFTED = [
    ("csv", b"\xff\xfe\x00p\x00a\x00t\x00h"),                           # UTF-16, not UTF-8
    ("csv", b"path,label\n\x80\x81\x82,ring growing\n"),                 # invalid UTF-8
    ("csv", b"path,label\nclips/a.mp4,ring\x00growing\n"),               # NUL byte
    ("csv", b"path,label\n" + b"x" * 300_000 + b",1\n"),                 # a field over csv's limit
    ("csv", b"path,label\nclips/a.mp4," + b"y" * 200_000 + b"\n"),       # a huge label
    ("csv", b"path,label\nclips/a\x00.mp4,1\n"),                         # a path with NUL
    ("csv", b"path,label\n\"unterminated,1\n"),
    ("csv", b"path,label\na,b,c\n"),
    ("csv", b"path,label\n,\n"),
    ("csv", b""),
    ("csv", b"path,label\nclips/a.mp4,-1\n"),
    ("csv", b"path,label\nclips/a.mp4,99999999999999999999999\n"),
    ("jsonl", b"[1, 2, 3]\n"),
    ("jsonl", b'{"path": null, "label": 1}\n'),
    ("jsonl", b'{"path": ["a"], "label": {"x": 1}}\n'),
    ("jsonl", b'{"path": "a.mp4", "label": 1e309}\n'),
    ("jsonl", b'{"path": "a.mp4", "label": "' + b"z" * 200_000 + b'"}\n'),
    ("jsonl", b"\x00\x01\x02\x03" * 1000),
    ("jsonl", b'{"path": "a\\u0000b.mp4", "label": 1}\n'),
    ("jsonl", b"[" * 100_000),                                           # deep nesting
]


def _mutations(base: bytes, rng: random.Random, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        data = bytearray(base)
        kind = rng.choice(["flip", "truncate", "splice", "junk", "repeat"])
        if kind == "flip":
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == "truncate":
            data = data[: rng.randrange(len(data))]
        elif kind == "splice":
            at = rng.randrange(len(data))
            data = data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) + data[at:]
        elif kind == "junk":
            data = bytearray(rng.randbytes(rng.randint(1, 512)))
        else:
            data = data * rng.randint(2, 50)
        out.append(bytes(data))
    return out


def _cases():
    rng = random.Random(SEED)
    cases = list(CRAFTED)
    cases += [("csv", d) for d in _mutations(CSV_BASE, rng, 40)]
    cases += [("jsonl", d) for d in _mutations(JSONL_BASE, rng, 40)]
    return cases


CASES = _cases()


class _Timeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise _Timeout


@pytest.mark.parametrize("index", range(len(CASES)))
def test_manifest_case_ends_in_a_result_or_a_leaps_error(tmp_path, index):
    ext, data = CASES[index]
    manifest = tmp_path / f"manifest.{ext}"
    manifest.write_bytes(data)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    start = time.perf_counter()
    try:
        stimuli = load_stimulus_set(str(manifest), list(TOY_CLASSES))
        assert isinstance(stimuli, list)
    except LeapsError as err:
        assert str(manifest) in str(err)  # the message names the file at fault
    except _Timeout:
        pytest.fail(f"case {index} took over {CASE_SECONDS} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert time.perf_counter() - start < CASE_SECONDS
