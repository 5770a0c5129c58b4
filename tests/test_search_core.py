"""Pipeline config validation, the trial store and the search strategies that read it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest

from recnas.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from recnas.search.strategies import RegularizedEvolution, StrategyError, make_strategy
from recnas.space import SearchSpace
from recnas.study import SCHEMA, StoreError, Study, TrialStore, convert_v1


@dataclass(frozen=True)
class _Search:
    strategy: str = "random"
    budget: int = 64
    lr: float = 0.1


@dataclass(frozen=True)
class _Pipe:
    name: str = "p"
    search: _Search = field(default_factory=_Search)
    files: tuple[str, ...] = ()
    limit: int | None = None


def test_config_unknown_key_names_dotted_path_and_allowed_keys():
    with pytest.raises(ConfigError) as e:
        from_dict(_Pipe, {"search": {"budgt": 3}}, source="p.yaml")
    msg = str(e.value)
    assert "p.yaml" in msg and "'search.budgt'" in msg and "['budget', 'lr', 'strategy']" in msg


def test_config_type_errors_name_key():
    with pytest.raises(ConfigError, match=r"'search.budget': expected an integer, got 'many'"):
        from_dict(_Pipe, {"search": {"budget": "many"}})
    with pytest.raises(ConfigError, match=r"'search.budget': expected an integer"):
        from_dict(_Pipe, {"search": {"budget": True}})
    with pytest.raises(ConfigError, match=r"'files': expected a list"):
        from_dict(_Pipe, {"files": "a.txt"})


def test_config_builds_nested_values_and_round_trips():
    cfg = from_dict(_Pipe, {"search": {"budget": 8, "lr": 1}, "files": ["a", "b"], "limit": None})
    assert cfg.search.budget == 8 and cfg.search.lr == 1.0 and isinstance(cfg.search.lr, float)
    assert cfg.files == ("a", "b")
    assert from_dict(_Pipe, to_dict(cfg)) == cfg


def test_overrides_parse_yaml_values_and_reject_malformed():
    d = apply_overrides({"search": {"budget": 8}}, ["search.budget=32", "search.strategy=evolution", "limit=null"])
    assert d == {"search": {"budget": 32, "strategy": "evolution"}, "limit": None}
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["search.budget"])
    # An override with a typo is caught by validation, like a file key.
    with pytest.raises(ConfigError, match="'search.budgte'"):
        from_dict(_Pipe, apply_overrides({}, ["search.budgte=3"]))


def test_load_yaml_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_yaml(p)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_yaml(tmp_path / "missing.yaml")


def _store(p, config):
    return TrialStore.open(p, config=config)


def _rec(i, key, score, measure="toy", settings="s"):
    return {"type": "trial", "study": "search", "index": i, "batch": i, "key": key, "measure": measure,
            "settings": settings, "seed": None, "score": score}


def test_store_appends_durably_and_reads_back(tmp_path):
    p = tmp_path / "j.jsonl"
    with _store(p, {"seed": 1, "space": "tiny"}) as st:
        for i in range(3):
            st.append(_rec(i, f"k{i}", float(i)))
    lines = p.read_text().splitlines()
    head = json.loads(lines[0])
    assert head["type"] == "header" and head["schema"] == SCHEMA and len(lines) == 4
    st2 = _store(p, {"seed": 1, "space": "tiny"})
    assert [t["key"] for t in st2.trials()] == ["k0", "k1", "k2"]
    assert st2.lookup("k1", "toy", "s")["score"] == 1.0
    # the key is (architecture, measure, settings, seed): any other part differing is another measurement
    assert st2.lookup("k1", "toy", "other") is None and st2.lookup("k1", "other", "s") is None
    assert st2.lookup("k1", "toy", "s", seed=0) is None
    st2.close()


def test_store_is_readable_while_written(tmp_path):
    p = tmp_path / "j.jsonl"
    writer = _store(p, {})
    reader = TrialStore.read(p)
    writer.append(_rec(0, "a", 0.5))
    with open(p, "a") as fh:
        fh.write('{"type": "trial", "ke')  # another writer's line, not finished yet
    assert reader.refresh() == 1 and reader.lookup("a", "toy", "s")["score"] == 0.5
    assert len(TrialStore.read(p).trials()) == 1  # a partial line is skipped by a reader, not repaired
    writer.close()


def test_store_drops_partial_last_record_with_a_message(tmp_path, capsys):
    p = tmp_path / "j.jsonl"
    with _store(p, {}) as st:
        st.append(_rec(0, "a", 0.0))
    with open(p, "a") as fh:
        fh.write('{"type": "trial", "index": 1, "ke')  # killed mid-write
    st = _store(p, {})
    assert [t["key"] for t in st.trials()] == ["a"]
    assert "incomplete last record" in capsys.readouterr().err
    st.append(_rec(1, "b", 1.0))
    st.close()
    assert [t["key"] for t in _store(p, {}).trials()] == ["a", "b"]


def test_store_refuses_other_config_corrupt_lines_and_old_schema(tmp_path):
    p = tmp_path / "j.jsonl"
    _store(p, {"seed": 1, "search": {"budget": 8}}).close()
    with pytest.raises(StoreError, match=r"j\.jsonl: written by a different configuration \(differs at search.budget: saved 8, now 9\); use a new output folder"):
        _store(p, {"seed": 1, "search": {"budget": 9}})
    q = tmp_path / "c.jsonl"
    q.write_text(json.dumps({"type": "header", "schema": SCHEMA, "config": {}}) + "\nnot json\n")
    with pytest.raises(StoreError, match=r"c\.jsonl:2: corrupt"):
        _store(q, {})
    v1 = tmp_path / "v1.jsonl"
    v1.write_text('{"type": "header", "version": 1, "config": {}}\n')
    with pytest.raises(StoreError, match="schema 1.*converts it in place"):
        _store(v1, {})
    with pytest.raises(ValueError, match="record type"):
        _store(tmp_path / "x.jsonl", {}).append({"type": "bogus"})


def test_convert_v1_keeps_every_record_and_the_original(tmp_path):
    p = tmp_path / "journal.jsonl"
    old = [{"type": "header", "version": 1, "config": {"a": 1}}] + [
        {"type": "trial", "index": i, "key": f"k{i}", "spec": {}, "score": float(i), "seconds": 0.1, "cached": False}
        for i in range(5)]
    p.write_text("".join(json.dumps(r) + "\n" for r in old))
    before = p.read_bytes()
    assert convert_v1(p, {"a": 2}, "sigeo", "abc", batch_size=2) == 5
    assert (tmp_path / "journal.v1.jsonl").read_bytes() == before
    st = _store(p, {"a": 2})
    assert [(t["index"], t["batch"], t["measure"], t["settings"], t["score"]) for t in st.trials()] == [
        (i, i // 2, "sigeo", "abc", float(i)) for i in range(5)]


def _run(strategy, n, score, batch=2, study=None):
    """Asks ``n`` proposals ``batch`` at a time through a study, measuring each with ``score``."""
    space = strategy.space
    study = study or Study(TrialStore.memory(), space, measure="toy", settings="")
    while len(study.history()) < n:
        for t in study.ask_record(strategy.ask(study, batch)):
            study.tell_record(t, score(t.spec))
    return study


def _keys(study):
    return [t.key for t in study.history()]


def _toy_score(spec):
    return float(sum(b.dense_dim for b in spec.blocks) - 3 * sum(b.sparse_dim for b in spec.blocks))


def test_strategies_are_deterministic_for_a_seed_and_valid():
    space = SearchSpace.load("tiny")
    for name, params in (("random", {}), ("evolution", dict(population=8, sample=4, children=2)),
                         ("predictor", dict(initial=6, pool=50))):
        a = _keys(_run(make_strategy(name, space, seed=3, **params), 30, _toy_score))
        b = _keys(_run(make_strategy(name, space, seed=3, **params), 30, _toy_score))
        c = _keys(_run(make_strategy(name, space, seed=4, **params), 30, _toy_score))
        assert a == b and a != c, name
        for k in a:
            assert len(k) == 16


def test_a_fresh_strategy_continues_from_the_store_alone():
    """Each strategy, stopped after some batches and continued by a new instance that reads only the
    store, proposes exactly what one uninterrupted instance does."""
    space = SearchSpace.load("nasrec_small")
    for name, params in (("random", {}), ("evolution", dict(population=8, sample=4, children=4)),
                         ("predictor", dict(initial=8, pool=40))):
        full = _keys(_run(make_strategy(name, space, seed=1, **params), 40, _toy_score, batch=4))
        study = _run(make_strategy(name, space, seed=1, **params), 12, _toy_score, batch=4)
        for cut in (20, 32, 40):
            study = _run(make_strategy(name, space, seed=1, **params), cut, _toy_score, batch=4, study=study)
        assert _keys(study) == full, name


def test_a_store_from_other_settings_is_refused_by_the_replay():
    space = SearchSpace.load("tiny")
    study = _run(make_strategy("evolution", space, seed=1, population=4, sample=2, children=2), 8, _toy_score)
    with pytest.raises(StrategyError, match="proposal 0 is architecture .* now proposes"):
        make_strategy("evolution", space, seed=2, population=4, sample=2, children=2).ask(study, 2)
    study.ask_record([space.sample(np.random.default_rng(0))])  # pending, never measured
    with pytest.raises(StrategyError, match=r"proposals \[8\] are not measured"):
        make_strategy("predictor", space, initial=2).ask(study, 2)


def test_evolution_and_the_predictor_improve_on_random_for_a_learnable_score():
    space = SearchSpace.load("nasrec_small")
    best = {"random": [], "evolution": [], "predictor": []}
    for seed in range(3):
        for name, params in (("random", {}), ("evolution", dict(population=16, sample=8, children=4)),
                             ("predictor", dict(initial=16, pool=200))):
            study = _run(make_strategy(name, space, seed=seed, **params), 64, _toy_score, batch=4)
            best[name].append(max(t.score for t in study.history()))
    assert np.mean(best["evolution"]) > np.mean(best["random"])
    assert np.mean(best["predictor"]) > np.mean(best["random"])


def test_evolution_population_ages_out_oldest_and_children_are_mutations():
    space = SearchSpace.load("tiny")
    evo = RegularizedEvolution(space, population=5, sample=2, children=3, seed=0)
    study = _run(evo, 11, _toy_score, batch=1)
    evo.ask(study, 1)  # tells the last measured batch
    hist = study.history()
    assert len(evo.members) == 5
    assert [s.key() for s, _ in evo.members] == [t.key for t in hist[-5:]]

    def n_diff(a, b):
        d = int(a.embedding_dim != b.embedding_dim)
        for x, y in zip(a.blocks, b.blocks):
            d += sum(getattr(x, f) != getattr(y, f) for f in x.__dataclass_fields__)
        return d

    # Children (after the 5 initial samples) are one mutation away from an earlier member.
    for i, t in enumerate(hist[5:], start=5):
        assert min(n_diff(t.spec, p.spec) for p in hist[:i]) == 1


def test_bad_strategy_settings_are_named():
    space = SearchSpace.load("tiny")
    with pytest.raises(ValueError, match="unknown search strategy 'anneal'"):
        make_strategy("anneal", space)
    with pytest.raises(ValueError, match=r"sample must be in \[1, population=4\]"):
        make_strategy("evolution", space, population=4, sample=8)
    with pytest.raises(ValueError, match=r"strategy 'random': unknown parameters \['population'\]"):
        make_strategy("random", space, population=4)
    with pytest.raises(ValueError, match="'params' is not a predictor"):
        make_strategy("predictor", space, predictor="params")
