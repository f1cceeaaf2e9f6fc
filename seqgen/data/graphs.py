"""Node classification data: one graph, its node features and labels, and train/val/test masks.

Readers (``GRAPH_DATASETS``), one per dataset:

* ``karate``: Zachary's karate club (34 members, 78 friendships; networkx's copy of the 1977
  data, embedded). The label is the faction each member joined after the split (``Mr. Hi`` or
  ``Officer``); features are one-hot node ids, as in Kipf & Welling's demo. One labelled member
  per faction (the instructor, node 0, and the administrator, node 33), 10 held out for
  validation (seeded), the other 22 for the test.
* ``cora``, ``citeseer``, ``pubmed``: the Planetoid splits (Yang et al. 2016) in their published
  files ``ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index}``, read as Kipf's ``gcn`` code and
  torch_geometric's ``Planetoid`` read them (20 labelled nodes per class, 500 validation, 1,000
  test; CiteSeer's isolated test nodes get zero rows). The pickles are read by a restricted
  unpickler that builds only numpy arrays, lists, dicts and a stand-in for SciPy's CSR matrix
  (no code from the data, no SciPy needed).
* ``sbm``: a stochastic block model with a seed and a difficulty knob: ``blocks`` communities of
  ``block_size`` nodes, an edge inside a block with probability ``p_in`` and across blocks with
  ``p_out``; each node's features are its block's mean vector times ``feature_signal`` plus
  standard normal noise. With a weak signal the features alone cannot tell the blocks apart and
  the graph must.

The graph is one batch: a dict of tensors (``x`` (N, F), ``edge_index`` (2, E) with both
directions of every undirected edge and no self-loops, ``y`` (N,), ``train_mask``, ``val_mask``,
``test_mask``), which Lightning moves to the device as it is. Every epoch is one full-graph step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from seqgen.data.download import Resource, default_data_dir, fetch
from seqgen.data.registry import ReaderDataModule, Readers
from seqgen.data.safe_pickle import NUMPY_ARRAYS, restricted_load
from seqgen.errors import ConfigError, DataError
from seqgen.utils import check_positive, check_probability

Graph = dict[str, torch.Tensor]
GRAPH_DATASETS = Readers("graph")


def undirected_edges(src: torch.Tensor, dst: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """``edge_index`` (2, E) holding both directions of each edge once, sorted, self-loops dropped."""
    s, d = torch.cat([src, dst]), torch.cat([dst, src])
    keep = s != d
    key = torch.unique(s[keep] * num_nodes + d[keep])
    return torch.stack([key // num_nodes, key % num_nodes])


def masks(num_nodes: int, **index: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"<name>_mask": bool (N,)}`` from node indices."""
    out = {}
    for name, idx in index.items():
        m = torch.zeros(num_nodes, dtype=torch.bool)
        m[idx] = True
        out[f"{name}_mask"] = m
    return out


# -- Zachary's karate club -------------------------------------------------------------------------
KARATE_FACTIONS = ["Mr. Hi", "Officer"]


@GRAPH_DATASETS.register("karate", num_features=lambda dm: 34, num_classes=lambda dm: 2)
def read_karate(dm: Any) -> tuple[Graph, list[str]]:
    try:
        import networkx as nx
    except ImportError as e:  # networkx comes with torch; a trimmed install may lack it
        raise DataError("the karate club graph needs networkx: pip install networkx") from e
    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    y = torch.tensor([KARATE_FACTIONS.index(g.nodes[i]["club"]) for i in range(n)])
    src, dst = (torch.tensor(v) for v in zip(*g.edges()))
    labelled = torch.tensor([0, 33])  # the instructor and the administrator
    rest = torch.tensor([i for i in range(n) if i not in (0, 33)])
    rest = rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(dm.seed))]
    graph = {"x": torch.eye(n), "edge_index": undirected_edges(src, dst, n), "y": y,
             **masks(n, train=labelled, val=rest[:10], test=rest[10:])}
    return graph, KARATE_FACTIONS


# -- Planetoid: Cora, CiteSeer, PubMed ---------------------------------------------------------------
PLANETOID = {  # nodes, features, classes, labelled training nodes (published)
    "cora": (2708, 1433, 7, 140),
    "citeseer": (3327, 3703, 6, 120),
    "pubmed": (19717, 500, 3, 60),
}
PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data/"
PLANETOID_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


def planetoid_resources(name: str) -> list[Resource]:
    # the planetoid repository publishes no checksums (torch_geometric and DGL fetch these files unchecked)
    return [Resource(f"planetoid/ind.{name}.{part}", (PLANETOID_URL + f"ind.{name}.{part}",)) for part in PLANETOID_PARTS]


class _CSR:
    """Stand-in for ``scipy.sparse.csr_matrix`` in a pickle: keeps its state, builds nothing."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.state = state

    def dense(self, path: Path) -> torch.Tensor:
        s = {k.decode() if isinstance(k, bytes) else k: v for k, v in self.state.items()}
        shape = s.get("_shape", s.get("shape"))
        if shape is None or not all(k in s for k in ("data", "indices", "indptr")):
            raise DataError(f"{path}: a sparse matrix without data/indices/indptr/shape ({sorted(s)})")
        rows, cols = int(shape[0]), int(shape[1])
        indptr = torch.as_tensor(s["indptr"].astype("int64"))
        if len(indptr) != rows + 1:
            raise DataError(f"{path}: CSR indptr has {len(indptr)} entries for {rows} rows")
        row = torch.repeat_interleave(torch.arange(rows), indptr.diff())
        out = torch.zeros(rows, cols)
        out[row, torch.as_tensor(s["indices"].astype("int64"))] = torch.as_tensor(s["data"].astype("float32"))
        return out


PLANETOID_PICKLE = NUMPY_ARRAYS | {("collections", "defaultdict"), ("__builtin__", "list"), ("builtins", "list"),
                                   ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
                                   ("__builtin__", "object"), ("builtins", "object")}
CSR_NAMES = {(m, "csr_matrix"): _CSR for m in ("scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse")}


def _load_part(path: Path) -> Any:
    return restricted_load(path, PLANETOID_PICKLE, CSR_NAMES, encoding="latin1", what="Planetoid file")


def _matrix(obj: Any, path: Path) -> torch.Tensor:
    if isinstance(obj, _CSR):
        return obj.dense(path)
    t = torch.as_tensor(obj)
    if t.dim() != 2:
        raise DataError(f"{path}: expected a matrix, got shape {tuple(t.shape)}")
    return t.float()


def load_planetoid(name: str, root: str | Path) -> Graph:
    """The Planetoid split of ``name`` from ``root/planetoid/ind.<name>.*`` (as Kipf's gcn reads it)."""
    paths = {part: fetch(r, root) for part, r in zip(PLANETOID_PARTS, planetoid_resources(name))}
    parts = {p: _load_part(paths[p]) for p in PLANETOID_PARTS if p != "test.index"}
    x, tx, allx = (_matrix(parts[p], paths[p]) for p in ("x", "tx", "allx"))
    y, ty, ally = (_matrix(parts[p], paths[p]).argmax(1) for p in ("y", "ty", "ally"))
    try:
        test_index = torch.tensor([int(line) for line in paths["test.index"].read_text().split()])
    except ValueError as e:
        raise DataError(f"{paths['test.index']}: not one node index per line ({e})") from e
    if len(tx) != len(test_index) or len(ty) != len(tx):
        raise DataError(f"{paths['tx']}: {len(tx)} test rows, {len(ty)} test labels, {len(test_index)} test indices")
    lo, hi = int(test_index.min()), int(test_index.max())
    if lo < len(allx):
        raise DataError(f"{paths['test.index']}: test node {lo} overlaps the {len(allx)} training nodes")
    # CiteSeer: some test nodes are isolated and missing from tx; their rows stay zero (as in Kipf's code)
    n = hi + 1
    features = torch.zeros(n, allx.size(1))
    labels = torch.zeros(n, dtype=torch.long)
    features[: len(allx)], labels[: len(ally)] = allx, ally
    features[test_index], labels[test_index] = tx, ty
    graph = parts["graph"]
    if not isinstance(graph, dict):
        raise DataError(f"{paths['graph']}: expected a dict of adjacency lists, got {type(graph).__name__}")
    pairs = [(int(u), int(v)) for u, vs in graph.items() for v in vs]
    n = max(n, 1 + max(max(p) for p in pairs)) if pairs else n
    if n > len(features):  # nodes that only the graph names
        features = torch.cat([features, torch.zeros(n - len(features), features.size(1))])
        labels = torch.cat([labels, torch.zeros(n - len(labels), dtype=torch.long)])
    src, dst = (torch.tensor(v) for v in zip(*pairs))
    n_train = len(y)
    return {"x": features, "edge_index": undirected_edges(src, dst, n), "y": labels,
            **masks(n, train=torch.arange(n_train), val=torch.arange(n_train, n_train + 500),
                    test=test_index.sort().values)}


def _register_planetoid(name: str) -> None:
    nodes, features, classes, _ = PLANETOID[name]

    @GRAPH_DATASETS.register(name, resources=lambda dm: planetoid_resources(name),
                             num_features=lambda dm: features, num_classes=lambda dm: classes)
    def read(dm: Any) -> tuple[Graph, list[str]]:
        return load_planetoid(name, dm.data_dir), [str(i) for i in range(classes)]


for _name in PLANETOID:
    _register_planetoid(_name)


# -- a stochastic block model -------------------------------------------------------------------------
def stochastic_block_model(blocks: int, block_size: int, p_in: float, p_out: float, num_features: int,
                           feature_signal: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features (N, F), edge_index, labels) of a seeded SBM; N = blocks * block_size."""
    gen = torch.Generator().manual_seed(seed)
    n = blocks * block_size
    y = torch.arange(blocks).repeat_interleave(block_size)
    same = y[:, None] == y[None, :]
    p = torch.where(same, torch.tensor(p_in), torch.tensor(p_out))
    upper = torch.triu(torch.rand(n, n, generator=gen) < p, diagonal=1)
    src, dst = upper.nonzero(as_tuple=True)
    means = torch.nn.functional.normalize(torch.randn(blocks, num_features, generator=gen), dim=1)
    x = feature_signal * means[y] + torch.randn(n, num_features, generator=gen)
    return x, undirected_edges(src, dst, n), y


def _check_sbm(dm: Any) -> None:
    check_positive("data.sbm.blocks", dm.sbm["blocks"])
    check_positive("data.sbm.block_size", dm.sbm["block_size"])
    for key in ("p_in", "p_out"):
        check_probability(f"data.sbm.{key}", dm.sbm[key])
    if dm.train_per_class * dm.sbm["blocks"] + dm.val_size >= dm.sbm["blocks"] * dm.sbm["block_size"]:
        raise ConfigError(f"data.train_per_class={dm.train_per_class} and data.val_size={dm.val_size} leave no test node "
                          f"in {dm.sbm['blocks']} blocks of {dm.sbm['block_size']}")


@GRAPH_DATASETS.register("sbm", check=_check_sbm, num_features=lambda dm: dm.sbm["num_features"],
                         num_classes=lambda dm: dm.sbm["blocks"])
def read_sbm(dm: Any) -> tuple[Graph, list[str]]:
    x, edge_index, y = stochastic_block_model(seed=dm.seed, **dm.sbm)
    gen = torch.Generator().manual_seed(dm.seed + 1)
    order = torch.randperm(len(y), generator=gen)
    train = torch.cat([order[y[order] == c][: dm.train_per_class] for c in range(dm.sbm["blocks"])])
    rest = order[~torch.isin(order, train)]
    graph = {"x": x, "edge_index": edge_index, "y": y,
             **masks(len(y), train=train, val=rest[: dm.val_size], test=rest[dm.val_size:])}
    return graph, [f"block {c}" for c in range(dm.sbm["blocks"])]


SBM_DEFAULTS = {"blocks": 4, "block_size": 100, "p_in": 0.05, "p_out": 0.01, "num_features": 16, "feature_signal": 1.0}


class GraphDataModule(ReaderDataModule):
    """``dataset``: a name in :data:`GRAPH_DATASETS` (karate, cora, citeseer, pubmed, sbm).
    ``normalize_features``: divide each node's features by their sum (Kipf & Welling's
    preprocessing of the bag-of-words datasets). ``sbm``: the block model's settings (see
    :func:`stochastic_block_model`); ``train_per_class`` and ``val_size`` its split."""

    READERS = GRAPH_DATASETS

    def __init__(self, dataset: str = "karate", data_dir: str | None = None, normalize_features: bool = False,
                 seed: int = 0, sbm: dict[str, Any] | None = None, train_per_class: int = 20, val_size: int = 100):
        super().__init__(dataset)
        unknown = set(sbm or {}) - set(SBM_DEFAULTS)
        if unknown:
            raise ConfigError(f"unknown key data.sbm.{sorted(unknown)[0]}; it accepts: {', '.join(SBM_DEFAULTS)}")
        self.sbm = {**SBM_DEFAULTS, **(sbm or {})}
        check_positive("data.train_per_class", train_per_class)
        check_positive("data.val_size", val_size)
        self.dataset, self.data_dir = dataset, str(data_dir or default_data_dir())
        self.normalize_features, self.seed = normalize_features, seed
        self.train_per_class, self.val_size = train_per_class, val_size
        self.graph: Graph | None = None
        self.classes: list[str] = []
        self.check_reader()

    def setup(self, stage: str | None = None) -> None:
        if self.graph is not None:
            return
        graph, self.classes = self.reader.read(self)
        if self.normalize_features:
            graph["x"] = graph["x"] / graph["x"].sum(1, keepdim=True).clamp_min(1e-12)
        self.graph = graph

    @property
    def dims(self) -> dict[str, Any]:
        return {"num_features": self.reader.info["num_features"](self),
                "num_classes": self.reader.info["num_classes"](self)}

    def split_loader(self, split: str, train: bool) -> DataLoader:
        """Every split is the whole graph (its masks tell the splits apart)."""
        self.setup()
        return DataLoader([self.graph], batch_size=None, collate_fn=lambda g: g)

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "classes": self.classes, "dims": self.dims}
