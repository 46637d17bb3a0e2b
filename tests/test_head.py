"""The head contract (``suite.head``): every head fills it in, links carry data sizes into the
model, the optional ``num_train_examples`` hook reaches the run summary, no import circles."""

import ast
import inspect
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch

from suite.errors import UsageError
from suite.head import Head
from suite.module import TaskModule
from suite.paths import ROOT
from suite.runner import build_cli, train_size
from tasks import HEADS


def test_the_registry_imports_no_torch():
    code = "import sys, tasks; assert tasks.HEADS; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_head_fills_in_the_contract(name: str):
    head = HEADS[name]
    assert head.name == name and head.summary and "\n" not in head.summary
    assert issubclass(head.module_class(), TaskModule)
    assert issubclass(head.datamodule_class(), pl.LightningDataModule)
    assert head.monitor[0].startswith("val/") and head.monitor[1] in ("min", "max")
    assert not hasattr(head.module_class(), "monitor")  # the contract holds it, once
    # every head has the same shape: its classes in module.py and data.py of its package
    assert head.module.startswith(f"tasks.{name}.module:")
    assert head.datamodule.startswith(f"tasks.{name}.data:")
    assert head.data == f"tasks.{name}.data"
    # predict_inputs takes exactly the declared options, so `suite predict` can pass them all
    params = list(inspect.signature(head.module_class().predict_inputs).parameters)
    assert params == ["self", "inputs", *(option.name for option in head.predict_options)]


def test_a_head_names_its_classes_and_their_modules_follow_from_its_package():
    head = Head(name="tts", summary="text to speech", module="TTSModule",
                datamodule="TTSDataModule", monitor=("val/loss", "min"))
    assert head.module == "tasks.tts.module:TTSModule"
    assert head.datamodule == "tasks.tts.data:TTSDataModule"
    assert head.data == "tasks.tts.data"
    elsewhere = Head(name="tts", summary="text to speech", module="speech.models:TTS",
                     datamodule="speech.corpus:Corpus", data="speech.corpus",
                     monitor=("val/loss", "min"))
    assert (elsewhere.module, elsewhere.datamodule, elsewhere.data) == (
        "speech.models:TTS", "speech.corpus:Corpus", "speech.corpus")


def test_a_piece_that_cannot_be_loaded_is_a_usage_error_naming_it():
    head = Head(name="diarization", summary="who spoke when", module="DiarizationModule",
                datamodule="DiarizationDataModule", monitor=("val/loss", "min"),
                status="in progress")
    with pytest.raises(UsageError,
                       match="tasks.diarization.module:DiarizationModule .* still being built"):
        head.module_class()
    with pytest.raises(UsageError, match="tasks.diarization.data:available"):
        head.available()


def test_an_experiment_of_an_unknown_head_stops_before_it_trains():
    from suite.experiment import plan_runs

    with pytest.raises(UsageError, match="unknown head 'nope'"):
        plan_runs({"head": "nope", "runs": [{"name": "a"}]}, quick=False)


# ----------------------------------------------------------------------------- links
class WordsData(pl.LightningDataModule):
    """A data module whose vocabulary size is known only once it exists."""

    def __init__(self, words: int = 7) -> None:
        super().__init__()
        self.vocab_size = words + 2  # + padding and unknown


class WordsModel(pl.LightningModule):
    def __init__(self, vocab_size: int = 0, dim: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.embedding = torch.nn.Embedding(vocab_size, dim)


LINKED = Head(name="words", summary="a linked toy head", module=f"{__name__}:WordsModel",
              datamodule=f"{__name__}:WordsData", data=__name__, monitor=("val/loss", "min"),
              links=(("data.vocab_size", "model.vocab_size"),))


def test_links_carry_a_data_size_into_the_model(tmp_path: Path):
    args = ["--data.words=5", "--run.root", str(tmp_path), "--trainer.logger=false"]
    cli = build_cli(LINKED, args, trainer_defaults={})
    assert cli.model.hparams.vocab_size == 7 == cli.datamodule.vocab_size
    assert cli.model.embedding.num_embeddings == 7
    # the saved config.yaml leaves it out, so `suite test` can re-read it
    assert "vocab_size" not in cli.parser.dump(cli.config)
    with pytest.raises(UsageError, match="data.vocab_size"):  # the data says it, not the user
        build_cli(LINKED, [*args, "--model.vocab_size=3"], trainer_defaults={})
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  vocab_size: 3\n")  # nor a config file, where it would be lost
    with pytest.raises(UsageError, match="model.vocab_size is set by the data module"):
        build_cli(LINKED, [*args, "-c", str(config)], trainer_defaults={})


# ----------------------------------------------------------------------------- train size
def test_a_node_task_reports_its_labelled_training_nodes():
    """Node tasks train on one graph; a run's train_size is its labelled nodes, not 1."""
    from tasks.graph.data import GraphDataModule

    dm = GraphDataModule("karate", seed=0)
    dm.prepare_data()
    dm.setup("fit")
    trainer = SimpleNamespace(datamodule=dm, train_dataloader=dm.train_dataloader())
    labelled = int(dm.parts["train"][0].train_mask.sum())
    assert train_size(trainer) == dm.num_train_examples == labelled > 1


def test_without_the_hook_the_train_size_is_the_training_set():
    trainer = SimpleNamespace(datamodule=object(),
                              train_dataloader=SimpleNamespace(dataset=range(7)))
    assert train_size(trainer) == 7


# ----------------------------------------------------------------------------- imports
def first_party_imports() -> dict[str, set[str]]:
    """Module -> the first-party modules it imports anywhere (function bodies too), without
    its own parent packages (Python initialises those first whatever the code says)."""
    files = {}
    for package in ("suite", "tasks", "experiments"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in files.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for target in targets:  # importing a.b.c runs a, a.b and a.b.c
                parts = target.split(".")
                imported |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        graph[name] = (imported & files.keys()) - parents
    return graph


def test_no_import_circles():
    graph = first_party_imports()
    assert "suite.cli" not in graph["suite.runner"] | graph["suite.experiment"]
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(name):]
                                                                 + [name]))
        if name not in done:
            for imported in sorted(graph[name]):
                visit(imported, [*path, name])
            done.add(name)

    for name in sorted(graph):
        visit(name, [])
