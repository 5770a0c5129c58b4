"""`recnas data synth`: raw files prepare can read, deterministic, skewed, with interaction signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import OneHotEncoder

from recnas.data import prepare, synth
from recnas.data.formats import AVAZU_COLUMNS, CRITEO_DENSE, CRITEO_SPARSE
from recnas.data.synth import CatSpec, SynthProfile, Teacher, default_profile, fit_profile, generate

CRITEO_COLS = ["label", *CRITEO_DENSE, *CRITEO_SPARSE]


def read_criteo(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", header=None, names=CRITEO_COLS, dtype=str, keep_default_na=False)


def test_deterministic_for_a_seed_and_prefix_stable(tmp_path):
    a = synth("criteo", 3000, tmp_path / "a.txt", seed=1, progress=False, chunk_rows=1000)
    b = synth("criteo", 3000, tmp_path / "b.txt", seed=1, progress=False, chunk_rows=1000)
    c = synth("criteo", 3000, tmp_path / "c.txt", seed=2, progress=False, chunk_rows=1000)
    d = synth("criteo", 1500, tmp_path / "d.txt", seed=1, progress=False, chunk_rows=1000)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert a.read_text().splitlines()[:1500] == d.read_text().splitlines()
    g = synth("criteo", 3000, tmp_path / "g.txt.gz", seed=1, progress=False, chunk_rows=1000)
    import gzip

    assert gzip.decompress(g.read_bytes()) == a.read_bytes()


def test_criteo_file_is_the_raw_layout_with_skew_and_missing_rates(tmp_path):
    p = synth("criteo", 20_000, tmp_path / "s.txt", seed=0, progress=False)
    df = read_criteo(p)
    assert len(df) == 20_000 and df.shape[1] == 40
    assert set(df["label"]) == {"0", "1"}
    assert 0.18 < df["label"].astype(int).mean() < 0.26  # calibrated to the profile's 0.22
    assert df["C1"].str.fullmatch(r"[0-9a-f]{8}").all()
    prof = default_profile("criteo")
    for spec in prof.sparse:
        assert abs((df[spec.name] == "").mean() - spec.missing) < 0.02, spec.name
    for spec in prof.dense:
        assert abs((df[spec.name] == "").mean() - spec.missing) < 0.02, spec.name
    assert (df["I2"].replace("", "0").astype(int) < 0).any()  # negative integers occur, as in Criteo
    # Zipf-like: frequencies fall like a power of the rank
    counts = df.loc[df["C3"] != "", "C3"].value_counts().to_numpy()
    slope = np.polyfit(np.log(np.arange(1, 31)), np.log(counts[:30]), 1)[0]
    assert -1.6 < slope < -0.6
    assert counts[0] > 20 * counts[min(200, len(counts) - 1)]
    s = prepare("criteo", [p], tmp_path / "ds", min_count=2, progress=False)
    assert s["rows_skipped_total"] == 0 and sum(s["rows_written"].values()) == 20_000


def test_avazu_file_is_the_raw_layout(tmp_path):
    p = synth("avazu", 5000, tmp_path / "a.csv", seed=0, progress=False)
    df = pd.read_csv(p, dtype=str)
    assert list(df.columns) == list(AVAZU_COLUMNS) and len(df) == 5000
    assert df["id"].is_unique and df["hour"].str.fullmatch(r"141\d{5}").all()
    assert df["hour"].is_monotonic_increasing  # time-ordered like the real file
    assert df["device_ip"].str.fullmatch(r"[0-9a-f]{8}").all()
    s = prepare("avazu", [p], tmp_path / "ds", hash_size=1000, progress=False)
    assert s["rows_skipped_total"] == 0 and 0.12 < s["label_rate"]["train"] < 0.22


def test_labels_carry_pairwise_signal():
    """On a small profile: logistic regression with pairwise crosses beats the first-order one."""
    prof = SynthProfile("criteo", tuple(CatSpec(f"C{j}", "hex", 10, 0.5, 0.0) for j in range(8)), (), ctr=0.25)
    teacher = Teacher(prof, seed=0)
    ranks, _, prob, y = generate(prof, teacher, seed=0, chunk=0, n=24_000)
    x = ranks.T
    crosses = np.stack([x[:, a] * 100 + x[:, b] for a in range(8) for b in range(a + 1, 8)], axis=1)
    tr, te = slice(0, 19_000), slice(19_000, None)

    def fit(features):
        enc = OneHotEncoder(handle_unknown="ignore").fit(features[tr])
        m = LogisticRegression(C=0.05, max_iter=500).fit(enc.transform(features[tr]), y[tr])
        return log_loss(y[te], m.predict_proba(enc.transform(features[te]))[:, 1])

    first, pairs = fit(x), fit(np.concatenate([x, crosses], axis=1))
    best = log_loss(y[te], prob[te])
    assert pairs < first - 0.01, (first, pairs)
    assert best < pairs < first


def test_default_teacher_is_not_first_order():
    """The full teacher explains the labels clearly better than its best-calibrated first-order part."""
    prof = default_profile("criteo")
    teacher = Teacher(prof, seed=0)
    ranks, dense, prob, y = generate(prof, teacher, seed=0, chunk=0, n=20_000)
    first = teacher.first_order_logits(ranks, dense)[:, None]
    calibrated = LogisticRegression(C=100.0).fit(first, y).predict_proba(first)[:, 1]
    assert log_loss(y, prob) < log_loss(y, calibrated) - 0.03
    assert 0.2 < prob.mean() < 0.24


def test_like_fits_marginals_of_a_sample(tmp_path, shared_data):
    sample = shared_data / "criteo_dac_train_first10k.txt.gz"
    raw = read_criteo(sample)
    prof = fit_profile("criteo", sample)
    assert prof.ctr == pytest.approx(raw["label"].astype(int).mean(), abs=1e-6)
    for spec in prof.sparse:
        assert spec.missing == pytest.approx((raw[spec.name] == "").mean(), abs=1e-6)
        assert spec.cardinality >= raw.loc[raw[spec.name] != "", spec.name].nunique()
    p = synth("criteo", 10_000, tmp_path / "like.txt", like=sample, seed=0, progress=False)
    df = read_criteo(p)
    assert abs(df["label"].astype(int).mean() - prof.ctr) < 0.025
    for c in ("C3", "C19", "C22", "I1", "I12"):
        assert abs((df[c] == "").mean() - (raw[c] == "").mean()) < 0.03, c
    # dense values follow the sample's quantiles (compare medians of present values)
    for c in ("I5", "I7"):
        a = raw.loc[raw[c] != "", c].astype(int).median()
        b = df.loc[df[c] != "", c].astype(int).median()
        assert 0.5 * a <= b <= 2 * a + 1, (c, a, b)
    # cardinalities extrapolate: a bigger draw shows more distinct values than the sample
    assert df["C3"].nunique() > 0.5 * raw["C3"].nunique()
    avazu = fit_profile("avazu", shared_data / "avazu_train_head9k.csv.gz")
    assert {s.name for s in avazu.sparse} == set(AVAZU_COLUMNS) - {"id", "click", "hour"}


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="criteo or avazu"):
        synth("criteo-1tb", 10, tmp_path / "x")
    with pytest.raises(ValueError, match="rows"):
        synth("criteo", 0, tmp_path / "x")


def test_interaction_rows_sets_which_values_carry_interactions():
    """Values ranked beyond ``interaction_rows`` share the teacher's "rare" interaction row, so two
    rows that differ only there get the same pairwise and higher-order terms (not the same first order)."""
    prof = default_profile("criteo")
    teacher = Teacher(prof, seed=0, interaction_rows=5)
    assert teacher.v.shape[1] == teacher.u.shape[1] == 5 + 2
    ranks, dense, _, _ = generate(prof, teacher, seed=0, chunk=0, n=64)
    j = int(teacher.pair_fields[0])
    a, b = ranks.copy(), ranks.copy()
    a[j], b[j] = 7, 9  # both rarer than the 5 interaction values
    ta, tb = teacher.terms(a, dense), teacher.terms(b, dense)
    np.testing.assert_allclose(ta[1:], tb[1:])
    assert not np.allclose(ta[0], tb[0])
    c = ranks.copy()
    c[j] = 2  # one of the 5: its own interaction embedding
    assert not np.allclose(teacher.terms(c, dense)[1], ta[1])
    with pytest.raises(ValueError, match="interaction_rows"):
        Teacher(prof, seed=0, interaction_rows=0)
    # the default is unchanged: the same labels as before the option existed
    assert np.array_equal(Teacher(prof, seed=0).v, Teacher(prof, seed=0, interaction_rows=1000).v)


def test_synth_cli_interaction_rows_changes_the_labels(tmp_path):
    import subprocess
    import sys

    outs = []
    for k in ("1000", "10"):
        out = tmp_path / f"k{k}.txt"
        subprocess.run([sys.executable, "-m", "recnas", "data", "synth", "--format", "criteo", "--rows", "3000",
                        "--out", str(out), "--quiet", "--interaction-rows", k], check=True)
        outs.append(read_criteo(out))
    default = read_criteo(synth("criteo", 3000, tmp_path / "api.txt", seed=0, progress=False))
    assert outs[0].equals(default)  # the CLI default is the API default
    assert outs[0].drop(columns="label").equals(outs[1].drop(columns="label"))  # same features
    assert not outs[0]["label"].equals(outs[1]["label"])  # other teacher, other labels


# ------------------------------------------------------------------------------------------------
# teacher versions: v1 (the default, unchanged) and v2 (dense x categorical, cross products, deep)


def test_teacher_v1_is_the_default_everywhere(tmp_path):
    """``teacher="v1"`` is what no teacher argument gives: the same bytes (Criteo and Avazu), the same
    terms; and the pipeline's cache key leaves a v1 teacher out, so caches made before the option keep
    their keys."""
    from recnas.pipeline import DataConfig, _cache_key

    for fmt in ("criteo", "avazu"):
        a = synth(fmt, 1500, tmp_path / f"{fmt}_a", seed=3, interaction_rows=20, progress=False, chunk_rows=1000)
        b = synth(fmt, 1500, tmp_path / f"{fmt}_b", seed=3, interaction_rows=20, teacher="v1", progress=False,
                  chunk_rows=1000)  # fmt: skip
        c = synth(fmt, 1500, tmp_path / f"{fmt}_c", seed=3, interaction_rows=20, teacher="v2", progress=False,
                  chunk_rows=1000)  # fmt: skip
        assert a.read_bytes() == b.read_bytes() != c.read_bytes()
        if fmt == "criteo":  # v2 changes the labels only: the features are v1's
            assert read_criteo(a).drop(columns="label").equals(read_criteo(c).drop(columns="label"))
    prof = default_profile("criteo")
    t1, t2 = Teacher(prof, seed=0), Teacher(prof, seed=0, version="v2")
    assert t1.version == "v1" and t1.term_names == ("first_order", "pairwise", "higher_order")
    ranks, dense, _, _ = generate(prof, t1, seed=0, chunk=0, n=512)
    np.testing.assert_array_equal(Teacher(prof, seed=0, version="v1").terms(ranks, dense), t1.terms(ranks, dense))
    # v2 keeps v1's parameters and terms and appends its own
    assert np.array_equal(t1.w, t2.w) and np.array_equal(t1.v, t2.v) and np.array_equal(t1.W, t2.W)
    np.testing.assert_array_equal(t2.terms(ranks, dense)[:3], t1.terms(ranks, dense))
    base = DataConfig(synth_rows=1000)
    assert base.identity() == DataConfig(synth_rows=1000, synth_teacher="v1").identity()
    assert "synth_teacher" not in base.identity()
    v2 = DataConfig(synth_rows=1000, synth_teacher="v2")
    assert v2.identity()["synth_teacher"] == "v2" and _cache_key(v2, []) != _cache_key(base, [])


def test_teacher_v2_is_deterministic_and_each_term_has_its_calibrated_std():
    prof = default_profile("criteo")
    t = Teacher(prof, seed=1, version="v2")
    again = Teacher(prof, seed=1, version="v2")
    assert t.term_names == ("first_order", "pairwise", "higher_order", "dense_x_cat", "cross", "deep")
    ranks, dense, prob, _ = generate(prof, t, seed=1, chunk=2, n=16_384)
    np.testing.assert_array_equal(prob, generate(prof, again, seed=1, chunk=2, n=16_384)[2])
    assert t.bias == again.bias and np.array_equal(t.scale, again.scale)
    assert not np.allclose(prob, generate(prof, Teacher(prof, seed=2, version="v2"), seed=1, chunk=2, n=16_384)[2])
    parts = t.terms(ranks, dense) * t.scale[:, None]  # rows not in the calibration sample
    np.testing.assert_allclose(parts.std(axis=1), [0.6, 1.0, 0.6, 0.6, 0.6, 0.4], rtol=0.1)
    assert 0.2 < prob.mean() < 0.24
    # the terms are different effects, not one effect counted twice
    corr = np.corrcoef(parts)
    assert np.abs(corr - np.eye(6)).max() < 0.2
    # the dense x categorical term: zero where its dense columns are missing, and it depends on both
    # the dense value and the gating field's value
    gone = dense.copy()
    gone[t.gate_dense] = np.nan
    assert np.abs(t.terms(ranks, gone)[3]).max() < 1e-5
    f, d = int(t.gate_fields[0]), int(t.gate_dense[0])
    other = ranks.copy()
    other[f] = np.where(ranks[f] == 1, 2, 1)
    assert not np.allclose(t.terms(other, dense)[3], t.terms(ranks, dense)[3])
    shifted = dense.copy()
    shifted[d] = shifted[d] * 3 + 5
    assert not np.allclose(t.terms(ranks, shifted)[3], t.terms(ranks, dense)[3])


def test_teacher_v2_on_avazu_and_a_small_profile():
    """Without dense columns the dense x categorical term is 0 (not NaN) and the others are calibrated."""
    from recnas.data.synth import _avazu_teacher_profile

    for prof in (_avazu_teacher_profile(default_profile("avazu")),
                 SynthProfile("criteo", tuple(CatSpec(f"C{j}", "hex", 10, 0.5, 0.0) for j in range(3)), (), 0.25)):
        t = Teacher(prof, seed=0, interaction_rows=20, version="v2")
        ranks, dense, prob, _ = generate(prof, t, seed=0, chunk=1, n=8192)
        parts = t.terms(ranks, dense) * t.scale[:, None]
        assert np.isfinite(prob).all() and t.scale[3] == 0 and not parts[3].any()
        np.testing.assert_allclose(parts[[0, 1, 2, 4, 5]].std(axis=1), [0.6, 1.0, 0.6, 0.6, 0.4], rtol=0.15)


def test_teacher_v2_labels_are_further_from_first_order():
    """v2 adds signal beyond first order: the teacher's own log loss gains on a first-order recalibration."""
    prof = default_profile("criteo")
    gaps = {}
    for version in ("v1", "v2"):
        teacher = Teacher(prof, seed=0, version=version)
        ranks, dense, prob, y = generate(prof, teacher, seed=0, chunk=0, n=20_000)
        first = teacher.first_order_logits(ranks, dense)[:, None]
        calibrated = LogisticRegression(C=100.0).fit(first, y).predict_proba(first)[:, 1]
        gaps[version] = log_loss(y, calibrated) - log_loss(y, prob)
    assert gaps["v2"] > gaps["v1"] + 0.02, gaps


def test_unknown_teacher_version_is_a_one_line_error(tmp_path):
    import subprocess
    import sys

    from recnas.pipeline import DataConfig

    with pytest.raises(ValueError, match=r"^synth --teacher must be one of v1, v2, got 'v3'$"):
        synth("criteo", 10, tmp_path / "x", teacher="v3")
    with pytest.raises(ValueError, match="teacher must be one of v1, v2"):
        Teacher(default_profile("criteo"), seed=0, version="v3")
    with pytest.raises(ValueError, match=r"^data.synth_teacher: expected 'v1' or 'v2', got 'v3'$"):
        DataConfig(synth_rows=10, synth_teacher="v3")
    r = subprocess.run([sys.executable, "-m", "recnas", "data", "synth", "--format", "criteo", "--rows", "10",
                        "--out", str(tmp_path / "y"), "--quiet", "--teacher", "v3"], capture_output=True, text=True)
    assert r.returncode != 0 and "--teacher" in r.stderr and "v3" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "y").exists()
