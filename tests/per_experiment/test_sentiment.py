"""sentiment: the TF-IDF baseline, and the report pairing it with our runs by split seed."""

from experiments.sentiment import baselines, long_documents
from experiments.sentiment.report import analysis, figures


def test_baseline_learns_a_separable_toy_set() -> None:
    train = [f"{w} film {i}" for i in range(20) for w in ("great", "awful")]
    labels = [1, 0] * 20
    result = baselines.tfidf_logreg(train, labels, ["great plot", "awful plot"], [1, 0],
                                    val_texts=["great", "awful"], val_labels=[1, 0])
    assert result["accuracy"] == result["macro_f1"] == 1.0
    assert result["C"] in baselines.C_GRID
    assert baselines.tfidf_logreg(train, labels, ["great"], [1])["C"] == 1.0


def _row(name: str, model: str, seed: int, acc: float, grid: list | None = None) -> dict:
    overrides = {"data.seed": seed, **({"C_grid": grid} if grid else {})}
    stage = {"stage": model} if model.endswith("logreg") else {}  # baselines are stage rows
    return {"name": name, "model": model, "dataset": "rotten-tomatoes-binary", "seed": seed,
            "overrides": overrides, "params": 10, "train_seconds": 1.0,
            "metrics": {"test/acc": acc, "test/macro_f1": acc}, **stage}


def test_analysis_pairs_runs_with_the_baseline_of_their_split() -> None:
    results = {"command": "suite experiment sentiment", "runs": [
        _row("binary-s0", "transformer-cls", 0, 0.80),
        _row("binary-s1", "transformer-cls", 1, 0.70),
        _row("tfidf-logreg-binary-s0", "tfidf-logreg", 0, 0.75, [16.0]),
        _row("tfidf-logreg-binary-s1", "tfidf-logreg", 1, 0.75, [16.0])]}
    text = analysis(results)
    assert "seed 0: ours 80.00 vs baseline 75.00 (+5.00); seed 1: ours 70.00" in text
    assert "C fixed to 16)" in text and "**missed** - ours 75.00%, baseline 75.00%" in text
    nb = _row("nb-logreg-binary-s0", "nb-logreg", 0, 0.79)
    assert "| nb-logreg |" not in analysis({**results, "runs": [*results["runs"], nb]})
    without = analysis({**results, "runs": results["runs"][:2]})  # the stage left out
    assert "Per split seed" not in without and "### Targets" not in without
    assert [f.name for f in figures(results).figures] == [
        "binary-s0_test_cls_attention.png", "binary-s0_test_confusion_matrix.png"]


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
