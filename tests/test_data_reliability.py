"""`recnas data prepare` under real faults: truncated and corrupt ``.gz`` inputs, a SIGKILL while
writing or publishing, bad rows in the middle of a file (issue 17, items 1, 5, 6 and 7).

Faults are real: a gzip file cut short with ``head -c`` semantics, one flipped byte, a process
killed by ``SIGKILL`` at a deterministic fault point (``RECNAS_FAULT``, see ``recnas.faults``)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from recnas.cli import main as recnas_main
from recnas.data import prepare
from recnas.data.formats import BadInputError
from recnas.data.loader import load_prepared

SPLITS = ("train", "valid", "test")
CHUNK = 200_000  # bytes: the 3,000-row file is read in 4 chunks


@pytest.fixture(scope="module")
def lines(shared_data) -> list[str]:
    with gzip.open(shared_data / "criteo_dac_train_first10k.txt.gz", "rt") as f:
        return f.read().splitlines()


@pytest.fixture(scope="module")
def gz(tmp_path_factory, lines) -> Path:
    """10,000 real Criteo rows, gzipped (~0.87 MB compressed, ~2.4 MB of text)."""
    p = tmp_path_factory.mktemp("gz") / "rows.txt.gz"
    p.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6))
    return p


def _splits(d: Path) -> dict[str, pd.DataFrame]:
    return {s: pq.read_table(d / s).to_pandas() for s in SPLITS}


def _stats(d: Path) -> dict:
    s = json.loads((d / "stats.json").read_text())
    return {k: v for k, v in s.items() if k not in ("seconds", "rows_per_s")}


# -- item 1: a truncated or corrupt .gz gives one line naming file and position, exit 2 -------------


@pytest.mark.parametrize("on_bad_row", ["error", "skip"])
def test_truncated_gzip_is_one_line_error_naming_file_and_position(tmp_path, gz, on_bad_row, capsys):
    data = gz.read_bytes()
    cut = tmp_path / "partial.txt.gz"
    cut.write_bytes(data[: len(data) * 6 // 10])  # a download stopped at 60 %
    out = tmp_path / "out"
    rc = recnas_main(["data", "prepare", "--format", "criteo", "--input", str(cut), "--out", str(out),
                      "--hash-size", "1000", "--quiet", "--on-bad-row", on_bad_row])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    assert f"{cut}: truncated gzip file" in err
    assert "after line " in err and f"at compressed byte {len(data) * 6 // 10:,} of {len(data) * 6 // 10:,}" in err
    line = int(err.split("after line ")[1].split(",")[0].replace(",", ""))
    assert 0 < line < 10_000  # reading stopped part-way, placed to within 1 MiB of text
    assert not out.exists()  # nothing published, no empty folder either


@pytest.mark.parametrize("on_bad_row", ["error", "skip"])
def test_corrupt_gzip_is_one_line_error(tmp_path, gz, on_bad_row):
    data = bytearray(gz.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the deflate stream
    bad = tmp_path / "flipped.txt.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(BadInputError) as e:
        prepare("criteo", [bad], tmp_path / "out", hash_size=1000, progress=False, on_bad_row=on_bad_row,
                chunk_bytes=CHUNK)  # fmt: skip
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{bad}:")
    # either the inflater rejects the stream, the CRC check fails at its end, or the garbage it
    # produced is a bad row (error mode); never a traceback, never a published dataset
    assert "corrupt gzip data" in msg or on_bad_row == "error", msg
    assert not (tmp_path / "out").exists()


# -- item 5: a SIGKILLed prepare leaves a usable state ---------------------------------------------


def _prepare_killed(src: Path, out: Path, fault: str, overwrite: bool = False) -> None:
    """Runs prepare in a child process that SIGKILLs itself at fault point ``fault``."""
    code = (
        "import sys; from recnas.data import prepare; "
        f"prepare('criteo', [{str(src)!r}], {str(out)!r}, hash_size=1000, progress=False, "
        f"chunk_bytes={CHUNK}, overwrite={overwrite})"
    )
    env = dict(os.environ, RECNAS_FAULT=fault, PYTHONWARNINGS="ignore")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)


@pytest.fixture(scope="module")
def small(tmp_path_factory, lines) -> tuple[Path, Path]:
    """3,000 rows and their uninterrupted prepared dataset."""
    d = tmp_path_factory.mktemp("small")
    src = d / "rows.txt"
    src.write_text("\n".join(lines[:3000]) + "\n")
    prepare("criteo", [src], d / "ref", hash_size=1000, progress=False, chunk_bytes=CHUNK)
    return src, d / "ref"


def _same_dataset(a: Path, b: Path) -> None:
    sa, sb = _splits(a), _splits(b)
    for s in SPLITS:
        pd.testing.assert_frame_equal(sa[s], sb[s])
    assert _stats(a) == _stats(b)
    assert (a / "feature_map.json").read_text() == (b / "feature_map.json").read_text()


def test_prepare_killed_while_writing_leaves_no_dataset_and_rerun_completes(tmp_path, small):
    src, ref = small
    out = tmp_path / "out"
    _prepare_killed(src, out, "prepare.chunk:2")
    assert not (out / "feature_map.json").exists()
    assert not any((out / s).exists() for s in SPLITS)  # no footer-less parquet where loaders look
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        load_prepared(out)
    prepare("criteo", [src], out, hash_size=1000, progress=False, chunk_bytes=CHUNK)  # no --overwrite needed
    _same_dataset(out, ref)
    assert not (out / ".prepare-partial").exists()


def test_prepare_killed_while_publishing_is_refused_by_loaders_and_rerun_completes(tmp_path, small):
    src, ref = small
    out = tmp_path / "out"
    _prepare_killed(src, out, "prepare.publish:2")  # train/ and valid/ moved in, the rest not
    assert (out / "train").is_dir() and not (out / "feature_map.json").exists()
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        load_prepared(out)
    prepare("criteo", [src], out, hash_size=1000, progress=False, chunk_bytes=CHUNK)
    _same_dataset(out, ref)


def test_killed_or_failed_overwrite_keeps_the_previous_dataset(tmp_path, small, lines):
    src, ref = small
    out = tmp_path / "out"
    prepare("criteo", [src], out, hash_size=1000, progress=False, chunk_bytes=CHUNK)
    other = tmp_path / "other.txt"
    other.write_text("\n".join(lines[3000:6000]) + "\n")
    _prepare_killed(other, out, "prepare.chunk:3", overwrite=True)
    load_prepared(out)
    _same_dataset(out, ref)
    spoilt = tmp_path / "spoilt.txt"
    spoilt.write_text("\n".join(lines[3000:4000] + ["1\tnot a row"] + lines[4001:6000]) + "\n")
    with pytest.raises(BadInputError, match=rf"{spoilt}:1001: "):
        prepare("criteo", [spoilt], out, hash_size=1000, progress=False, chunk_bytes=CHUNK, overwrite=True)
    _same_dataset(out, ref)
    assert not (out / ".prepare-partial").exists()


def test_bad_row_error_leaves_no_empty_output_folder(tmp_path, lines):
    src = tmp_path / "bad.txt"
    src.write_text("\n".join(lines[:100] + ["x"] + lines[101:300]) + "\n")
    out = tmp_path / "new" / "ds"
    with pytest.raises(BadInputError, match=rf"{src}:101: "):
        prepare("criteo", [src], out, hash_size=10, progress=False)
    assert not out.exists()


# -- item 6: skipping a bad row moves no other row to another split --------------------------------

SPOILERS = {
    "field_count": lambda s: s.rsplit("\t", 1)[0],
    "empty_line": lambda s: "",
    "blank_line": lambda s: "  ",  # whitespace only: the CSV parser drops it (one field)
    "bad_integer": lambda s: "\t".join(["0", "1", "2", "12x", *s.split("\t")[4:]]),
}


@pytest.mark.parametrize("kind", sorted(SPOILERS))
def test_skipping_a_bad_row_keeps_every_other_row_in_its_split(tmp_path, small, lines, kind):
    src, ref = small
    bad_at = 700  # 0-based; the first of four chunks
    spoilt = list(lines[:3000])
    spoilt[bad_at] = SPOILERS[kind](spoilt[bad_at])
    p = tmp_path / "spoilt.txt"
    p.write_text("\n".join(spoilt) + "\n")
    s = prepare("criteo", [p], tmp_path / "out", hash_size=1000, progress=False, chunk_bytes=CHUNK,
                on_bad_row="skip")  # fmt: skip
    assert s["rows_skipped_total"] == 1
    want, got = _splits(ref), _splits(tmp_path / "out")
    removed = 0
    for sp in SPLITS:
        a, b = want[sp], got[sp]
        if len(a) != len(b):  # the split that held the spoilt row: exactly that row is missing
            assert len(a) == len(b) + 1
            keys_a = [tuple(r) for r in a.itertuples(index=False)]
            keys_b = [tuple(r) for r in b.itertuples(index=False)]
            k = next((i for i, (x, y) in enumerate(zip(keys_a, keys_b)) if x != y), len(keys_b))
            assert keys_a[:k] + keys_a[k + 1 :] == keys_b, sp
            removed += 1
        else:
            pd.testing.assert_frame_equal(a, b)
    assert removed == 1


# -- item 7: skipped_examples are the first five bad rows, not one per chunk -----------------------


def test_skipped_examples_are_the_first_five_bad_rows(tmp_path, lines):
    spoilt = list(lines[:300])
    bad_lines = [11, 21, 31, 32, 41, 51, 61]  # 1-based; all in one chunk
    for n, line in enumerate(bad_lines):
        spoilt[line - 1] = SPOILERS[("field_count", "empty_line", "bad_integer")[n % 3]](spoilt[line - 1])
    p = tmp_path / "bad.txt"
    p.write_text("\n".join(spoilt) + "\n")
    s = prepare("criteo", [p], tmp_path / "out", hash_size=10, progress=False, on_bad_row="skip")
    assert s["rows_skipped_total"] == 7
    assert [int(e.split(":")[1]) for e in s["skipped_examples"]] == bad_lines[:5]
    assert all(e.startswith(f"{p}:") for e in s["skipped_examples"])


# -- a full disk: one line naming the folder, nothing published, the previous dataset whole -------


def test_full_disk_during_prepare_is_one_line_and_keeps_the_previous_dataset(tmp_path, small, lines, capsys):
    import errno
    import resource

    src, ref = small
    out = tmp_path / "out"
    prepare("criteo", [src], out, hash_size=1000, progress=False, chunk_bytes=CHUNK)
    other = tmp_path / "other.txt"
    other.write_text("\n".join(lines[3000:10000]) + "\n")
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, hard))  # a "disk" that takes 60 kB per file
    try:
        rc = recnas_main(["data", "prepare", "--format", "criteo", "--input", str(other), "--out", str(out),
                          "--hash-size", "1000", "--quiet", "--overwrite"])  # fmt: skip
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert os.strerror(errno.EFBIG) in err and f"into {out}; nothing was published" in err
    _same_dataset(out, ref)
    assert not (out / ".prepare-partial").exists()
