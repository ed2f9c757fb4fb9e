"""The fusion benchmark runner end to end on the tiny (untrained) models: the validation search and every variant run
through the real capture, align and train jobs, and the report files are written."""

import json

import pytest

from pipeline.bench import fusion, report, select, settings, tasks
from pipeline.bench.variants import DEFAULT, loss_settings, run_name
from pipeline.errors import ConfigError
from pipeline.tiny.models import ensure_tiny

TINY = {"arith-source": "tiny-gpt2-bpe", "dyck-source": "tiny-llama-sp", "pivot": "tiny-llama-pivot"}


@pytest.mark.ray
def test_runner_selects_on_val_then_writes_table_and_chart(ray_session, tmp_path, monkeypatch):
    monkeypatch.setattr(fusion, "ensure_bench_models",
                        lambda names, progress=True: {n: ensure_tiny(TINY[n]) for n in names})
    profile = fusion.Profile(settings=["several-answers"], fusion_per_skill=16, val_per_skill=2, test_per_skill=3,
                             epochs=1, batch_size=4, seeds=[0, 1], variants=["pivot", "sft", "sft+uld+gld"],
                             select_on="several-answers", grid={"temperature": [1.0]}, k=2)
    seen = []
    res = fusion.run_benchmark(tmp_path, profile, progress=False, on_row=seen.append)
    assert seen == res["rows"]
    assert [(r["variant"], r["seed"]) for r in res["rows"]] == [
        ("arith-source (teacher)", 0), ("dyck-source (teacher)", 0),
        ("pivot", 0), ("sft", 0), ("sft", 1), ("sft+uld+gld", 0), ("sft+uld+gld", 1)]
    keys = {f"{s}/{m}" for s in ("evens", "dyck") for m in ("em", "pass@2", "nll")}
    assert all(keys <= set(r) and all(0 <= r[k] <= 1 for k in keys if not k.endswith("nll")) for r in res["rows"])
    assert res["rows"][3]["steps"] == 8  # 32 fusion samples / batch 4, one epoch
    sel = json.loads((tmp_path / "several-answers" / "selection.json").read_text())
    assert [t["settings"]["temperature"] for t in sel["trials"]] == [2.0, 1.0]  # the start, then the grid
    assert sel["chosen"] == res["distill"] and res["distill"]["temperature"] in (1.0, 2.0)
    runs = sorted(p.name for p in (tmp_path / "several-answers" / "train").iterdir())
    assert run_name("sft+uld+gld", res["distill"], 0) in runs and len(runs) == 5  # 2 trials + sft x2 + gld s1
    table = (tmp_path / "results.md").read_text()
    assert "### several-answers" in table and "| sft+uld+gld |" in table and "| arith-source (teacher) |" in table
    assert "mean ± std over 2 seed(s)" in table and "top-1 = gold" in table
    # The untrained tiny teachers solve nothing: checked on val before any fusion run, flagged loudly in the report.
    assert res["teacher_val"].keys() == {"arith-source", "dyck-source"} and res["teacher_val"]["arith-source"].keys(
        ) == {"evens"}  # only the skills this profile's settings fuse
    assert res["weak_teachers"] and table.startswith("**WEAK TEACHER: ") and "Teachers' val exact match" in table
    stats = res["preps"]["several-answers"]["teacher_stats"]["arith-source"]
    assert set(stats) == {"evens", "dyck"} and all(0 <= d["top1_gold"] <= 1 for d in stats.values())
    assert (tmp_path / "accuracy.png").stat().st_size > 1000
    again = fusion.run_benchmark(tmp_path, profile, progress=False)  # finished runs are reused, not retrained
    assert [r["steps"] for r in again["rows"]] == [r["steps"] for r in res["rows"]]


def test_coordinate_search_moves_one_setting_at_a_time():
    calls = []

    def score(s):
        calls.append(dict(s))
        return {"a/em": s["lambda"] + (s["temperature"] == 1.0) * 0.1, "b/em": 0.0, "a/nll": 99.0}

    grid = {"lambda": [0.1, 0.5, 1.0], "temperature": [1.0, 2.0], "gld_space": ["rank"]}
    best, trials = select.coordinate_search(score, grid, DEFAULT)
    assert best == DEFAULT | {"lambda": 1.0, "temperature": 1.0}
    assert len(calls) == len(trials) == 4  # the start, λ 0.1 and 1.0, T 1.0; repeats are not retrained
    assert trials[0]["score"] == pytest.approx(0.25)


def test_coordinate_search_trains_one_settings_values_together():
    batches = []

    def map_fn(fn, candidates):
        batches.append([(c["lambda"], c["temperature"]) for c in candidates])
        return [fn(c) for c in candidates]

    def score(s):
        return {"a/em": -abs(s["lambda"] - 0.5) + (s["temperature"] == 1.0) * 0.1}

    grid = {"lambda": [0.1, 0.5, 1.0], "temperature": [1.0, 2.0]}
    best, trials = select.coordinate_search(score, grid, DEFAULT | {"lambda": 1.0}, map_fn=map_fn)
    # the start joins λ's values (not twice); T 2 at the chosen λ is the start of that round, tried already
    assert batches == [[(1.0, 2.0), (0.1, 2.0), (0.5, 2.0)], [(0.5, 1.0)]]
    assert best == DEFAULT | {"lambda": 0.5, "temperature": 1.0} and len(trials) == 4
    same, _ = select.coordinate_search(score, grid, DEFAULT | {"lambda": 1.0})  # one at a time: the same choice
    assert same == best


def test_noisy_setting_corrupts_exactly_its_share():
    recs = settings.fusion_records(settings.setting("noisy-labels"), 50)
    bad = [r for r in recs if r.get("corrupted")]
    assert len(bad) == 20 and {r["skill"] for r in bad} == {"arithmetic", "dyck"}
    assert all(tasks.answer_of(r["skill"], r["response"]) != tasks.answer_of(
        r["skill"], tasks.generate(r["skill"], "fusion", 50)[[x["id"] for x in tasks.generate(
            r["skill"], "fusion", 50)].index(r["id"])]["response"]) for r in bad)
    assert recs == settings.fusion_records(settings.setting("noisy-labels"), 50)
    clean = settings.fusion_records(settings.setting("clean"), 50)
    assert [r["id"] for r in clean] == [r["id"] for r in recs] and not any(r.get("corrupted") for r in clean)
    assert len(settings.fusion_records(settings.setting("little-data-7"), 50)) == 14
    assert {r["skill"] for r in settings.eval_records(settings.setting("several-answers"), "val", 3)} == {
        "evens", "dyck"}
    with pytest.raises(ConfigError, match="unknown setting"):
        settings.setting("tiny-data")


def test_variants_and_report():
    assert loss_settings("pivot", DEFAULT) is None
    assert loss_settings("sft+uld", DEFAULT)["lambda_gld"] == 0.0
    assert loss_settings("sft+uld+gld", DEFAULT | {"gld_space": "vocab"})["gld_space"] == "vocab"
    assert run_name("sft", DEFAULT, 0) == run_name("sft", DEFAULT | {"lambda": 0.1}, 0)  # SFT ignores them
    assert run_name("sft+uld", DEFAULT, 0) != run_name("sft+uld", DEFAULT | {"lambda": 0.1}, 0)
    with pytest.raises(ConfigError, match="unknown variant"):
        loss_settings("sft+magic", DEFAULT)
    rows = [{"setting": "x", "variant": "a", "seed": s, "dyck/em": e, "dyck/nll": n}
            for s, e, n in ((0, 0.5, 2.0), (1, 0.7, 4.0))]
    summary = report.summarize(rows)
    assert summary["x"]["a"]["dyck/em"][0] == pytest.approx(0.6) and summary["x"]["a"]["dyck/nll"][1] == 1.0
    assert "| a | 60.0 ± 10.0 | 3.00 ± 1.00 |" in report.markdown(summary, 2)
    once = report.summarize(rows[:1])  # a teacher or the pivot: one evaluation, no spread to show
    assert once["x"]["a"]["dyck/em"][1] is None and "| a | 50.0 | 2.00 |" in report.markdown(once, 1)


def test_goal_is_judged_beyond_the_seed_spread():
    def rows(setting, variant, ems):
        return [{"setting": setting, "variant": variant, "seed": i, "dyck/em": e, "evens/em": e} for i, e in
                enumerate(ems)]
    base = [0.40, 0.42, 0.44]  # std 0.016
    data = (rows("several-answers", "sft", base) + rows("several-answers", "sft+uld+gld", [0.50, 0.52, 0.54])
            + rows("several-answers", "sft+uld", [0.50, 0.50, 0.50])
            + rows("noisy-labels", "sft", base) + rows("noisy-labels", "sft+uld+gld", [0.43, 0.44, 0.45]))
    for n, ems in ((200, [0.5, 0.5, 0.5]), (800, [0.5, 0.5, 0.5]), (3200, [0.3, 0.3, 0.3])):
        data += rows(f"little-data-{n}", "sft", base) + rows(f"little-data-{n}", "sft+uld+gld", ems)
    text = "\n".join(report.goal(data))
    assert "**met** — beats sft on 2 of 3 (several-answers, little-data)" in text
    assert "| noisy-labels | +2.0 (spread 2.4) | within the spread |" in text
    assert "| little-data-3200 | -12.0 (spread 1.6) | below |" in text
    assert "| several-answers | +10.0 (spread 3.3); vs sft+uld +2.0 (spread 1.6) | beats |" in text
    worse = [r | {"dyck/em": 0.6, "evens/em": 0.6} if r["variant"] == "sft+uld" else r for r in data]
    worse_text = "\n".join(report.goal(worse))
    assert "**not met** — beats sft on 2 of 3 (several-answers, little-data); below sft+uld on several-answers" in \
        worse_text
    assert "| several-answers | +10.0 (spread 3.3); vs sft+uld -8.0 (spread 1.6) | beats; below sft+uld |" in worse_text
    assert report.goal(rows("x", "sft", base)) == []
    one_seed = rows("several-answers", "sft", [0.4]) + rows("several-answers", "sft+uld+gld", [0.5])
    assert report.goal(one_seed) == []


def test_profiles_name_known_models_for_every_role(tmp_path):
    from pipeline.bench.source_train import BENCH_MODELS

    for name, profile in fusion.PROFILES.items():
        assert set(profile.models) == set(fusion.ROLES), name
        assert all(m in BENCH_MODELS for m in profile.models.values()), name
        assert all(settings.setting(s) for s in profile.settings)
    quick, full = (BENCH_MODELS[fusion.PROFILES[p].models["arith-source"]] for p in ("quick", "full"))
    assert quick.spec.tokenizer_seed == full.spec.tokenizer_seed and quick.spec.hidden < full.spec.hidden
    assert set(full.train.skills) == set(fusion.SOURCES["arith-source"])
    with pytest.raises(ConfigError, match="no model for \\['pivot'\\]"):
        fusion.run_benchmark(tmp_path, fusion.Profile(models={"arith-source": "a", "dyck-source": "d"}))
    with pytest.raises(ConfigError, match="parallel_runs must be >= 1, got 0"):
        fusion.run_benchmark(tmp_path, fusion.Profile(parallel_runs=0))
    assert fusion.torch_threads(fusion.Profile(parallel_runs=64)) == 1  # never below one thread


def test_evaluations_are_stored_by_weights_records_and_options(tmp_path, monkeypatch):
    """A rerun of the benchmark reads the metrics it measured; other weights, records or options measure again."""
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights-1")
    calls = []
    monkeypatch.setattr(fusion, "evaluate", lambda m, tok, recs, **kw: calls.append(kw) or {"dyck/em": 0.5})
    recs = tasks.generate("dyck", "val", 3)
    store = tmp_path / "evals"
    assert fusion.evaluate_once(model, recs, store, k=0) == {"dyck/em": 0.5}
    assert fusion.evaluate_once(model, recs, store, k=0) == {"dyck/em": 0.5} and len(calls) == 1
    fusion.evaluate_once(model, recs, store, k=4)
    fusion.evaluate_once(model, recs[:2], store, k=0)
    (model / "model.safetensors").write_bytes(b"weights-2")
    fusion.evaluate_once(model, recs, store, k=0)
    assert len(calls) == 4 and len(list(store.iterdir())) == 4
    with pytest.raises(ConfigError, match="no \\*.safetensors"):
        fusion.evaluate_once(tmp_path / "evals", recs, store, k=0)
