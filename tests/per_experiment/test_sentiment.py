"""sentiment: the TF-IDF baseline, and the report pairing it with our runs by split seed."""

import pytest

from experiments.sentiment import baselines, long_documents
from experiments.sentiment.report import analysis, charts, figures, memory_exponent


def test_baseline_learns_a_separable_toy_set() -> None:
    train = [f"{w} film {i}" for i in range(20) for w in ("great", "awful")]
    labels = [1, 0] * 20
    result = baselines.tfidf_logreg(train, labels, ["great plot", "awful plot"], [1, 0],
                                    val_texts=["great", "awful"], val_labels=[1, 0])
    assert result["accuracy"] == result["macro_f1"] == 1.0
    assert result["C"] in baselines.C_GRID
    assert baselines.tfidf_logreg(train, labels, ["great"], [1])["C"] == 1.0


def _row(name: str, model: str, seed: int, acc: float, grid: list | None = None,
         dataset: str = "rotten-tomatoes-binary", **extra: object) -> dict:
    overrides = {"data.seed": seed, **({"C_grid": grid} if grid else {})}
    stage = {"stage": model} if model.endswith("logreg") else {}  # baselines are stage rows
    return {"name": name, "model": model, "dataset": dataset, "seed": seed,
            "group": name.rsplit("-s", 1)[0], "overrides": overrides, "params": 10,
            "train_seconds": 1.0,
            "metrics": {"test/acc": acc, "test/macro_f1": acc, "val/acc": acc},
            **stage, **extra}


def test_analysis_pairs_runs_with_the_baselines_of_their_split() -> None:
    results = {"command": "suite experiment sentiment", "runs": [
        _row("binary-s0", "transformer-cls", 0, 0.80),
        _row("binary-s1", "transformer-cls", 1, 0.70),
        _row("tfidf-logreg-binary-s0", "tfidf-logreg", 0, 0.75, [16.0]),
        _row("tfidf-logreg-binary-s1", "tfidf-logreg", 1, 0.75, [16.0]),
        _row("nb-logreg-binary-s0", "nb-logreg", 0, 0.79)]}
    text = analysis(results)
    assert "seed 0: ours 80.00 vs baseline 75.00 (+5.00); seed 1: ours 70.00" in text
    assert "| nb-logreg (baseline) | 79.00 |" in text and "| nb-logreg |" not in text
    assert "RT binary with pretraining >= 80.0% and above TF-IDF and NB-LR: **not measured" in text
    without = analysis({**results, "runs": results["runs"][:2]})  # the stages left out
    assert "Per seed" not in without
    assert [f.name for f in figures(results).figures] == [
        "binary-s0_test_cls_attention.png", "binary-s0_test_confusion_matrix.png"]


def test_targets_and_long_reviews_from_pretrained_imdb_and_cost_rows() -> None:
    imdb = {"dataset": "imdb-binary"}
    cost = [{"name": f"{m} T={t}", "stage": "long-documents", "model": m, "seq_len": t,
             "metrics": {"seconds": t / 1000, "peak_memory_mb": t / (1 if "local" in m else 8)}}
            for m in ("full attention", "local +-64 + global [CLS]") for t in (256, 512)]
    results = {"command": "suite experiment sentiment", "runs": [
        _row("pretrain-s0", "transformer-mlm", 0, None, dataset="imdb-mlm",
             train_seconds=3000.0, curves={"val/mlm_loss": [[100, 7.0], [200, 6.0]],
                                           "val/mlm_acc": [[100, 0.1], [200, 0.2]]}),
        _row("pretrain-small-s0", "transformer-mlm-small", 0, None, dataset="imdb-mlm",
             train_seconds=3300.0, curves={"val/mlm_loss": [[100, 6.5]]}),
        _row("binary-pretrained-s0", "transformer-pretrained", 0, 0.79),
        _row("binary-pretrained-small-s0", "transformer-pretrained-small", 0, 0.81),
        _row("binary-pretrained-small-lr1e-3-s0", "transformer-pretrained-small lr 1e-3", 0,
             0.80),
        _row("tfidf-logreg-binary-s0", "tfidf-logreg", 0, 0.77),
        _row("nb-logreg-binary-s0", "nb-logreg", 0, 0.78),
        _row("imdb-pretrained-s0", "transformer-imdb-pretrained", 0, 0.88, **imdb),
        _row("imdb-pretrained-s1", "transformer-imdb-pretrained", 1, 0.86, **imdb),
        _row("tfidf-logreg-imdb-s0", "tfidf-logreg", 0, 0.89, **imdb),
        _row("nb-logreg-imdb-s0", "nb-logreg", 0, 0.90, **imdb),
        _row("imdb-first512-s0", "first-512", 0, 0.87, peak_memory_mb=900.0, steps=300,
             overrides={"data.batch_size": 16}, **imdb),
        _row("imdb-local2048-s0", "local64-global-2048", 0, 0.868, peak_memory_mb=800.0,
             **imdb),
        *cost]}
    text = analysis(results)
    # judged on the better pretrained arm, named
    assert ("RT binary with pretraining >= 80.0% and above TF-IDF and NB-LR: **met** - ours "
            "(transformer-pretrained-small) 81.00%, tfidf-logreg 77.00%, nb-logreg 78.00%.") in text
    assert ("IMDb with pretraining >= 90% and above TF-IDF and NB-LR: **missed** - ours "
            "(transformer-imdb-pretrained) 87.00%") in text
    # IMDb's one split: seed 1's run is paired with the seed-0 baseline too
    assert "seed 1: ours 86.00 vs baseline 89.00 (-3.00)" in text
    assert "Pretraining <= 60 min: **met** - 55.0 min." in text  # the longer of the two
    assert "- transformer-mlm (10 parameters): " in text
    assert "- transformer-mlm-small (10 parameters): " in text
    # the probes, by validation accuracy (equal to the test accuracy in these rows)
    assert ("| transformer-pretrained-small | 81.00 | 81.00 |\n"
            "| transformer-pretrained-small lr 1e-3 | 80.00 | 80.00 |") in text
    assert "at equal or lower memory: **met**" in text
    assert "| first-512 | 87.00 | 900.0 | 1.0 | 300 | 4,800 |" in text
    assert "| local +-64 + global [CLS] | 512 | 0.512 | 512 |" in text
    # measured to 512 tokens only: the linear-memory target waits for 4,096
    assert "grows linearly with length (measured to 4,096 tokens; memory ~ length^k, k <= " \
        "1.2): **not measured yet** - full attention ~ length^1.00" in text
    assert set(charts(results)) == {"pretraining.png", "long_documents.png"}


def test_memory_exponent_tells_linear_from_quadratic_growth() -> None:
    def rows(memory) -> list[dict]:
        return [{"seq_len": t, "metrics": {"peak_memory_mb": memory(t)}}
                for t in (256, 512, 1024, 2048, 4096)]

    assert memory_exponent(rows(lambda t: 100 + 0.5 * t)) == pytest.approx(1.0, abs=0.1)
    assert memory_exponent(rows(lambda t: 100 + t * t / 1000)) == pytest.approx(2.0, abs=0.1)
    assert memory_exponent(rows(lambda t: 1.0)[:1]) is None


def test_long_document_rows_measure_each_variant_and_length(monkeypatch) -> None:
    calls = []

    def fake(module: str, args: list, timeout: float) -> dict:
        calls.append(args)
        return {"seconds": 0.1, "peak_memory_mb": 10.0}

    monkeypatch.setattr(long_documents, "in_subprocess", fake)
    rows = long_documents.rows([128, 256], window=16, repeats=2)
    assert calls == [["128", "0", "2"], ["128", "16", "2"], ["256", "0", "2"], ["256", "16", "2"]]
    assert [(r["group"], r["seq_len"]) for r in rows][:2] == [
        ("full attention", 128), ("local +-16 + global [CLS]", 128)]
    measured = long_documents.measure(64, 8, repeats=1)  # the real thing, in this process
    assert measured["seconds"] > 0 and measured["peak_memory_mb"] >= 0
