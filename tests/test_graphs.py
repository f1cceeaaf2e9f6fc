"""Graph neural networks: the readers (karate club, Planetoid, stochastic block model), GCN against
its dense formula, and what is learned (karate factions from one label each; the graph beating the
features alone on a block model)."""

from __future__ import annotations

import pickle

import fixtures
import pytest
import torch

from conftest import make_cfg
from seqgen.data.graphs import GraphDataModule, load_planetoid, stochastic_block_model
from seqgen.errors import ConfigError, DataError
from seqgen.nets import GAT, GCN


def test_planetoid_reader_gives_the_published_split_sizes(tmp_path):
    """Cora's shape and split (Yang et al. 2016; Kipf & Welling's and torch_geometric's reading):
    2,708 nodes, 1,433 features, 7 classes, 140 / 500 / 1,000 train / val / test nodes; each test
    row lands at its node index; edges undirected."""
    wrote = fixtures.write_planetoid(tmp_path, "cora")
    g = load_planetoid("cora", tmp_path)
    assert tuple(g["x"].shape) == (2708, 1433)
    assert [int(g[f"{s}_mask"].sum()) for s in ("train", "val", "test")] == [140, 500, 1000]
    assert not (g["train_mask"] & g["val_mask"]).any() and not (g["val_mask"] & g["test_mask"]).any()
    assert torch.equal(g["x"], torch.as_tensor(wrote["x"]))
    assert torch.equal(g["y"], torch.as_tensor(wrote["y"]))
    assert int(g["y"].max()) == 6
    pairs = {(u, v) for u, vs in wrote["graph"].items() for v in vs if u != v}
    got = set(map(tuple, g["edge_index"].T.tolist()))
    assert got == pairs | {(v, u) for u, v in pairs}


def test_citeseer_isolated_test_nodes_get_zero_rows_and_stay_out_of_the_test(tmp_path):
    wrote = fixtures.write_planetoid(tmp_path, "citeseer", nodes=2000, features=50, classes=6, train=120,
                                     missing_test=7)
    g = load_planetoid("citeseer", tmp_path)
    missing = torch.as_tensor(wrote["missing"])
    assert len(g["y"]) == 2000 and int(g["test_mask"].sum()) == 993
    assert not g["test_mask"][missing].any()
    assert g["x"][missing].abs().sum() == 0
    keep = torch.as_tensor(wrote["test"])
    assert torch.equal(g["x"][keep], torch.as_tensor(wrote["x"])[keep])


def test_a_planetoid_pickle_that_runs_code_is_refused(tmp_path):
    fixtures.write_planetoid(tmp_path, "cora", nodes=1100, features=8, train=14)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "planetoid" / "ind.cora.graph").write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(DataError, match=r"__builtin__\.print, which is not allowed"):
        load_planetoid("cora", tmp_path)


def test_missing_planetoid_files_name_the_file_and_where_offline(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("SEQGEN_OFFLINE", "1")
    with pytest.raises(DataError, match=r"ind\.pubmed\.x(.|\n)*planetoid(.|\n)*kimiyoung/planetoid"):
        load_planetoid("pubmed", tmp_path)


def test_karate_club_is_zacharys():
    dm = GraphDataModule("karate")
    dm.setup()
    g = dm.graph
    assert g["x"].shape == (34, 34) and g["edge_index"].shape == (2, 2 * 78)
    assert g["y"].bincount().tolist() == [17, 17]  # networkx's club attribute: 17 each
    assert g["y"][0] == 0 and g["y"][33] == 1 and dm.classes == ["Mr. Hi", "Officer"]
    assert g["train_mask"].nonzero().view(-1).tolist() == [0, 33]
    assert [int(g[f"{s}_mask"].sum()) for s in ("val", "test")] == [10, 22]
    assert dm.dims == {"num_features": 34, "num_classes": 2}


def test_sbm_is_seeded_and_its_edges_follow_p_in_and_p_out():
    a = stochastic_block_model(4, 100, 0.1, 0.01, 8, 1.0, seed=3)
    b = stochastic_block_model(4, 100, 0.1, 0.01, 8, 1.0, seed=3)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    _, edges, y = a
    inside = y[edges[0]] == y[edges[1]]
    pairs_in, pairs_out = 4 * 100 * 99, 400 * 399 - 4 * 100 * 99  # ordered pairs
    assert abs(inside.sum() / pairs_in - 0.1) < 0.01
    assert abs((~inside).sum() / pairs_out - 0.01) < 0.002
    with pytest.raises(ConfigError, match="leave no test node"):
        GraphDataModule("sbm", sbm={"blocks": 2, "block_size": 10}, train_per_class=5, val_size=10)
    with pytest.raises(ConfigError, match="unknown key data.sbm.p_inn"):
        GraphDataModule("sbm", sbm={"p_inn": 0.1})


def test_gcn_layer_is_the_normalised_adjacency_formula():
    """One GCN layer equals D^-1/2 (A + I) D^-1/2 X W + b computed densely from the reader's edges."""
    torch.manual_seed(0)
    x, edges, _ = stochastic_block_model(2, 15, 0.3, 0.05, 5, 1.0, seed=0)
    net = GCN(num_features=5, num_classes=3, hidden_sizes=[], dropout=0.0)
    n = len(x)
    a = torch.zeros(n, n)
    a[edges[0], edges[1]] = 1
    a_hat = a + torch.eye(n)
    d = a_hat.sum(1).rsqrt()
    conv = net.convs[0]
    expected = (d[:, None] * a_hat * d[None, :]) @ (x @ conv.lin.weight.T) + conv.bias
    torch.testing.assert_close(net(x, edges), expected, rtol=1e-5, atol=1e-5)


def test_gat_heads_and_embedding_shapes():
    x, edges, _ = stochastic_block_model(2, 10, 0.3, 0.05, 6, 1.0, seed=0)
    net = GAT(num_features=6, num_classes=2, hidden=4, heads=3)
    assert net.embed(x, edges).shape == (20, 12) and net(x, edges).shape == (20, 2)


def _train_full_graph(net, g, steps=150, lr=0.01):
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=5e-4)
    for _ in range(steps):
        net.train()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(g["x"], g["edge_index"])[g["train_mask"]], g["y"][g["train_mask"]]).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(g["x"], g["edge_index"]).argmax(1)
    return float((pred[g["test_mask"]] == g["y"][g["test_mask"]]).float().mean())


@pytest.mark.learning
def test_the_graph_carries_what_the_features_cannot(learn_seed, lesson):
    """A block model whose features barely tell 4 blocks apart (signal 0.5): the GCN, reading the
    graph, beats the same GCN on the same nodes with every edge removed (a per-node MLP)."""
    dm = GraphDataModule("sbm", seed=learn_seed, sbm={"feature_signal": 0.5, "p_in": 0.05, "p_out": 0.005})
    dm.setup()
    g = dm.graph
    torch.manual_seed(learn_seed)
    with_graph = _train_full_graph(GCN(16, 4), g)
    torch.manual_seed(learn_seed)
    alone = _train_full_graph(GCN(16, 4), {**g, "edge_index": torch.empty(2, 0, dtype=torch.long)})
    lesson("GCN test accuracy (chance 0.25)", with_graph, ">", 0.6)
    lesson("features alone: test accuracy", alone, "<", 0.45)


@pytest.mark.slow
@pytest.mark.learning
def test_gcn_separates_the_karate_factions_from_one_label_each(tmp_path, learn_seed, lesson):
    """Kipf's demo through the recipe: one labelled member per faction, the GCN labels the other
    22 test members; the run writes the 2-D embedding plot."""
    from seqgen.train import run

    cfg = make_cfg(tmp_path, ["task=karate_gcn", f"seed={learn_seed}", "logger=none", "callbacks.progress_bar=null"])
    metrics = run(cfg)
    lesson("test accuracy on 22 members (chance 0.5)", metrics["test/acc"], ">", 0.8)
    assert (tmp_path / "run" / "plots" / "embedding.png").stat().st_size > 10_000
