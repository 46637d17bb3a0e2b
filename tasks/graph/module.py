"""Graph TaskModule: molecule property regression/classification and node classification.

One module serves every data set: the network's input and output sizes, the task and the
structure encodings come from the data module (``data_info``, linked by the CLI), the target
and descriptor standardisation from its training set once it is read (:meth:`setup`); all are
saved in the checkpoint (hyper-parameter ``data_info`` and the ``target_mean``/``target_std``
buffers), so ``load_from_checkpoint`` alone can predict for a user's SMILES.

Losses: MSE on standardised targets (regression), cross-entropy (classification, node
labels). Metrics (torchmetrics): RMSE and MAE in original units; ROC-AUC and accuracy;
node accuracy on the stage's mask.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch
from torchmetrics import MeanAbsoluteError, MeanSquaredError
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, MulticlassAccuracy

from suite.blocks import LayerConfig
from suite.errors import DataError
from suite.module import Stage, TaskModule, tsv_field
from tasks.graph.data import DATA_KEYS, GraphDataModule
from tasks.graph.model import GraphTransformer, NodeEncoder
from tasks.graph.peers import PEERS, PeerGNN

MODELS = ("edge", "full", *PEERS)
GLOBAL_ATTENTION = ("full", "gps")
"""Models in which every node attends to every node: their float-feature embeddings are
layer-normalised (:class:`NodeEncoder`'s ``normalise_features``)."""
ENCODER = LayerConfig(dim=64, depth=4, ffn_dim=128)
"""The graph head's default network size (``--model.encoder.*``)."""


class GraphModule(TaskModule):
    """Graph attention (``edge``/``full``) or a PyG peer on molecules or node tasks.

    Args:
        data_info: what the network is built for (:attr:`GraphDataModule.data_info`), linked
            from the data module; a checkpoint's also holds the descriptor standardisation.
        model: ``edge``, ``full`` (ours) or ``gat``, ``transformer_conv``, ``gps`` (PyG).
        encoder: the network's size - width, depth, heads, FFN width (ours only), dropout
            (residual, FFN, head) and attention dropout - for ours and the PyG peers alike.
        input_dropout: dropout on float node features (node tasks).
        structure_lr_scale: learning-rate multiple for the shortest-path-distance bias
            (``full``). A node task takes one step per epoch, so at the base rate the bias
            moves too little to focus attention on nearby nodes among thousands (Cora)
            within a run. Molecules keep 1.
        readout: ``cls`` (ours only), ``mean`` or ``sum`` for graph-level outputs.
        propagation_steps: node tasks with ``edge`` attention: rounds of personalised
            propagation of the outputs along the last layer's attention weights
            (:func:`tasks.graph.model.propagate`); 0 = none.
        teleport: the share of a node's own output kept at each round.
        attention_impl: ``auto``, ``dense`` or ``edge_list`` (``edge`` attention only).
            ``auto`` takes the edge list for ``edge`` attention unless a [CLS] token reads
            the molecule out (it attends to every atom, which only the dense mask can say):
            a padded batch of molecules costs O(B * N_max^2), the edge list O(E), so it
            trains faster, the more so the bigger the molecules.
        bond_messages: ``edge`` attention on the edge list: each layer adds an embedding of
            the bond features to every edge's key and value
            (:class:`suite.edge_list.EdgeList`'s ``kv``), not only a bias to its logit.
            None (default) = wherever that applies (molecules read out by mean/sum pooling);
            reports/graph_attention has the molecule rows with them.
        show_smiles: the molecule whose attention is drawn after testing (default: the
            first test molecule with at least 12 atoms).
        threads: torch intra-op threads while training/testing (0 = leave as is). Graph
            batches are many small ops for which a thread pool only contends, so one thread
            runs faster than two on a shared 2-core CPU.
        **kwargs: optimiser arguments of :class:`suite.module.TaskModule`.

    The head's checkpoint metric is ``val/loss``, one that every task logs; for regression
    it ranks like RMSE.
    """

    def __init__(self, data_info: dict[str, Any],
                 model: Literal["edge", "full", "gat", "transformer_conv", "gps"] = "edge",
                 encoder: LayerConfig = ENCODER, input_dropout: float = 0.0,
                 structure_lr_scale: float = 1.0,
                 readout: Literal["cls", "mean", "sum"] = "mean",
                 propagation_steps: int = 0, teleport: float = 0.1,
                 attention_impl: Literal["auto", "dense", "edge_list"] = "auto",
                 bond_messages: bool | None = None, show_smiles: str | None = None,
                 threads: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if model not in MODELS:
            raise ValueError(f"unknown graph model {model!r}; expected one of {MODELS}")
        self.encoder = encoder
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        self.info = data_info
        self.metrics = self._metrics(data_info["task"])
        self.net = self._network(data_info)

    # ------------------------------------------------------------------ construction
    def setup(self, stage: str) -> None:
        """Take the standardisation the data module computed from its training set, known
        only once it is read: descriptors (into ``data_info``, saved for ``predict``) and
        targets (into the buffers)."""
        dm = self.trainer.datamodule
        if self.hparams.threads:
            torch.set_num_threads(self.hparams.threads)
        self.info = {**self.info, "descriptor_mean": dm.descriptor_mean,
                     "descriptor_std": dm.descriptor_std}
        self.hparams["data_info"] = self.info
        if dm.task == "regression" and stage == "fit":
            self.target_mean.fill_(dm.target_mean)
            self.target_std.fill_(dm.target_std)

    def _network(self, info: dict[str, Any]) -> nn.Module:
        """Ours (:class:`GraphTransformer`) or a PyG peer, sized for the data in ``info``."""
        hp = self.hparams
        task = info["task"]
        molecules = task != "node"
        if hp.propagation_steps and hp.model != "edge":
            raise ValueError(f"propagation_steps applies to model 'edge' (along its attention "
                             f"weights), not {hp.model!r}: set it to 0")
        if hp.bond_messages is True and hp.model != "edge":
            raise ValueError(f"bond_messages applies to model 'edge' (over the edge list), "
                             f"not {hp.model!r}: set it to false")
        if hp.model == "full" and not info["spd"]:
            raise ValueError("model 'full' needs shortest-path distances: set data.spd=true")
        c = self.encoder
        nodes = NodeEncoder(
            c.dim, info["atom_feature_dims"], info["num_node_features"], info["pe_attr"],
            info["pe_dim"], hp.input_dropout,
            flip_pe_signs=molecules and info["pe"] == "laplacian",
            normalise_features=hp.model in GLOBAL_ATTENTION)
        out_dim = 1 if task == "regression" else info["num_classes"]
        if hp.model in PEERS:
            return PeerGNN(hp.model, dim=c.dim, depth=c.depth, heads=c.num_heads,
                           dropout=c.dropout, attention_dropout=c.attention_dropout,
                           encoder=nodes, out_dim=out_dim, graph_level=molecules,
                           readout=hp.readout, bond_feature_dims=info["bond_feature_dims"],
                           graph_features=info.get("num_graph_features", 0))
        impl = hp.attention_impl
        if impl == "auto":
            cls_readout = molecules and hp.readout == "cls"
            impl = "edge_list" if hp.model == "edge" and not cls_readout else "dense"
        return GraphTransformer(hp.model, config=c, node_encoder=nodes, out_dim=out_dim,
                                graph_level=molecules, readout=hp.readout,
                                bond_feature_dims=info["bond_feature_dims"],
                                spd_max=info["spd_max"] if info["spd"] else 0,
                                edge_list=impl == "edge_list",
                                propagation_steps=hp.propagation_steps, teleport=hp.teleport,
                                graph_features=info.get("num_graph_features", 0),
                                bond_messages=self._bond_messages(impl, info))

    def _bond_messages(self, impl: str, info: dict[str, Any]) -> bool:
        """``bond_messages``, with None resolved to: on the edge list and bonds to embed."""
        if self.hparams.bond_messages is None:
            return impl == "edge_list" and bool(info["bond_feature_dims"])
        return self.hparams.bond_messages

    def _metrics(self, task: str) -> nn.ModuleDict:
        metrics: dict[str, nn.Module] = {}
        for stage in ("val", "test"):
            if task == "regression":
                metrics[f"{stage}_rmse"] = MeanSquaredError(squared=False)
                metrics[f"{stage}_mae"] = MeanAbsoluteError()
            elif task == "classification":
                metrics[f"{stage}_auroc"] = BinaryAUROC()
                metrics[f"{stage}_acc"] = BinaryAccuracy()
            else:
                metrics[f"{stage}_acc"] = MulticlassAccuracy(self.info["num_classes"],
                                                             average="micro")
        return nn.ModuleDict(metrics)

    def param_groups(self) -> list[dict[str, Any]]:
        """The core's groups, with the SPD bias in its own group at ``structure_lr_scale``."""
        groups = super().param_groups()
        spd_bias = getattr(self.net, "spd_bias", None)
        if spd_bias is None or self.hparams.structure_lr_scale == 1.0:
            return groups
        for group in groups:
            group["params"] = [p for p in group["params"] if p is not spd_bias.weight]
        scaled = self.hparams.lr * self.hparams.structure_lr_scale
        return [*groups, {"params": [spd_bias.weight], "weight_decay": 0.0, "lr": scaled}]

    # ------------------------------------------------------------------ steps
    def batch_size(self, batch: Batch) -> int:
        return batch.num_graphs if self.info["task"] != "node" else int(batch.train_mask.sum())

    def forward(self, batch: Batch, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        return self.net(batch, need_weights)

    def step(self, batch: Batch, stage: Stage) -> Tensor:
        out, _ = self(batch)
        task = self.info["task"]
        if task == "node":
            mask = batch[f"{stage}_mask"]
            out, target = out[mask], batch.y[mask]
        else:
            target = batch.y
        n = int(target.shape[0])
        out = out.float()
        if task == "regression":
            loss = F.mse_loss(out.squeeze(-1), target)
        else:
            loss = F.cross_entropy(out, target)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=n)
        if stage != "train":
            self._update_metrics(out.detach(), target, stage, n)
        return loss

    def _update_metrics(self, out: Tensor, target: Tensor, stage: str, n: int) -> None:
        task = self.info["task"]
        if task == "regression":
            pred = out.squeeze(-1) * self.target_std + self.target_mean
            truth = target * self.target_std + self.target_mean
            updates = {"rmse": (pred, truth), "mae": (pred, truth)}
        elif task == "classification":
            prob = out.softmax(-1)[:, 1]
            updates = {"auroc": (prob, target), "acc": (prob, target)}
        else:
            updates = {"acc": (out.argmax(-1), target)}
        for name, (pred, truth) in updates.items():
            metric = self.metrics[f"{stage}_{name}"]
            metric.update(pred, truth)
            self.log(f"{stage}/{name}", metric, prog_bar=name != "mae", batch_size=n)

    def on_test_epoch_end(self) -> None:
        if self.hparams.model not in ("edge", "full") or not self.trainer.is_global_zero:
            return
        from tasks.graph.figures import log_attention_figures

        log_attention_figures(self, self.trainer.datamodule)

    # ------------------------------------------------------------------ predict
    def prediction_data(self) -> GraphDataModule:
        """A data module configured as in training (encodings, split seed, descriptor
        standardisation) - no data loaded."""
        dm = GraphDataModule(**{key: self.info[key] for key in DATA_KEYS if key in self.info})
        dm.descriptor_mean = self.info.get("descriptor_mean", dm.descriptor_mean)
        dm.descriptor_std = self.info.get("descriptor_std", dm.descriptor_std)
        return dm

    def predict_inputs(self, inputs: list[str], out: str | None = None) -> list[str]:
        """Molecules: one line per SMILES (property in original units, or class
        probability). Node tasks: the inputs are node indices (or ``all``) whose predicted
        labels are printed; ``out=PATH`` (``--out``) writes every node's label to a CSV."""
        if self.info["task"] == "node":
            return self._predict_nodes(inputs, out)
        dm = self.prediction_data()
        graphs = [dm.graph_for_prediction(smiles) for smiles in inputs]  # DataError if bad
        batch = Batch.from_data_list(graphs).to(self.device)
        out, _ = self(batch)
        out = out.float()
        name = self.info["dataset"]
        if self.info["task"] == "regression":
            values = out.squeeze(-1) * self.target_std + self.target_mean
            return [f"{tsv_field(s)}\t{v:.4f}\t({name})"
                    for s, v in zip(inputs, values.tolist(), strict=True)]
        probs = out.softmax(-1)[:, 1].tolist()
        return [f"{tsv_field(s)}\tp(class 1)={p:.4f}\t({name})"
                for s, p in zip(inputs, probs, strict=True)]

    def _predict_nodes(self, inputs: list[str], out_path: str | None) -> list[str]:
        dm = self.prediction_data()
        dm.prepare_data()
        dm.setup("predict")
        graph = Batch.from_data_list(dm.parts["test"]).to(self.device)
        labels = self(graph)[0].argmax(-1).tolist()
        n = len(labels)
        if [i.lower() for i in inputs] == ["all"]:
            nodes = list(range(n))
        else:
            try:
                nodes = [int(i) for i in inputs]
            except ValueError as err:
                raise DataError(f"node inputs must be node indices or 'all' ({err})") from err
            bad = [i for i in nodes if not 0 <= i < n]
            if bad:
                raise DataError(f"node index {bad[0]} outside 0..{n - 1} of {dm.dataset}")
        if out_path:
            split = ["train" if a else "val" if b else "test" if c else "-" for a, b, c in zip(
                graph.train_mask.tolist(), graph.val_mask.tolist(), graph.test_mask.tolist(),
                strict=True)]
            path = Path(out_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["node", "predicted", "label", "split"])
                writer.writerows([i, labels[i], int(graph.y[i]), split[i]] for i in range(n))
        lines = [f"node {i}\t{labels[i]}" for i in nodes]
        return lines + ([f"wrote {n} node labels to {out_path}"] if out_path else [])
