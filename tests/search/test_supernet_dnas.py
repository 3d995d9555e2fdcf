import torch
import pytest

from hwnas.runs import RunDir
from hwnas.search.dnas import FBNetSearch, SearchConfig, read_history
from hwnas.search.supernet import Supernet

from _search_fixtures import TINY_CHOICES, TINY_COSTS, synthetic_table, tiny_space


def test_expected_latency_is_the_mask_weighted_table_sum(space, table):
    net = Supernet(space, table, mode="gumbel", temperature=1.0)
    net(torch.randn(4, 1, 8, 8))
    costs = torch.tensor([TINY_COSTS[c] for c in TINY_CHOICES])
    manual = TINY_COSTS["stem"] + TINY_COSTS["head"] + sum(float(layer.last_weights.detach() @ costs) for layer in net.layers)
    # The supernet sums in float32, the reference in float64: allow float32 rounding.
    assert float(net.expected_latency()) == pytest.approx(manual, rel=1e-5)
    net.expected_latency().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.arch_parameters())


def test_uniform_distribution_latency_and_fixed_architecture(space, table):
    net = Supernet(space, table)
    mean_block = sum(TINY_COSTS[c] for c in TINY_CHOICES) / 3
    assert float(net.distribution_latency()) == pytest.approx(10.0 + 2 * mean_block, rel=1e-6)
    arch = space.make_arch(["k3_e3", "skip"])
    net.use_architecture(arch)
    net.eval()
    reference = space.build(arch).eval()
    # Copy the chosen candidates' weights into the standalone model: same function.
    reference.stem.load_state_dict(net.stem.state_dict())
    reference.head.load_state_dict(net.head.state_dict())
    for i, choice in enumerate(arch.choices):
        reference.layers[i].load_state_dict(net.layers[i].candidates[TINY_CHOICES.index(choice)].state_dict())
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(net(x), reference(x))
    assert float(net.expected_latency()) == pytest.approx(10.0 + 30.0 + 1.0)


def test_table_of_another_space_is_refused(space):
    other = tiny_space(resolution=16)
    with pytest.raises(ValueError, match="latency table is for test_tiny2 v1 at 16x16"):
        Supernet(space, synthetic_table(other))


def _tensors(search):
    out = {f"supernet.{k}": v for k, v in search.supernet.state_dict().items()}
    for i, p in enumerate(search.supernet.arch_parameters()):
        out[f"logits.{i}"] = p.detach()
    return out


def test_resume_gives_the_same_result_as_an_uninterrupted_run(space, table, splits, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bitwise-reproducible kernels
    try:
        config = SearchConfig(epochs=2, warmup_epochs=1, batch_size=16, num_samples=3, seed=3)
        straight = FBNetSearch(space, table, splits, config, run=RunDir(tmp_path / "a"), progress=False, log=None)
        result_a = straight.run()

        interrupted = FBNetSearch(space, table, splits, SearchConfig(**{**config.to_dict(), "epochs": 2}),
                                  run=RunDir(tmp_path / "b"), progress=False, log=None)
        interrupted.run_epoch()  # epoch 1 then "killed" after its checkpoint
        interrupted.run_dir.save_checkpoint("search", interrupted.epoch, interrupted.state_dict())
        torch.manual_seed(12345)  # the new process starts from other random states
        resumed = FBNetSearch(space, table, splits, config, run=RunDir(tmp_path / "b"), progress=False, log=None)
        result_b = resumed.run(resume=True)
    finally:
        torch.set_num_threads(threads)
    a, b = _tensors(straight), _tensors(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert result_a.architecture.choices == result_b.architecture.choices
    assert [c["arch"] for c in result_a.candidates] == [c["arch"] for c in result_b.candidates]
    history = read_history(str(tmp_path / "b" / "history.json"))
    assert [r["epoch"] for r in history["epochs"]] == [1, 2]
    assert history["epochs"][1]["arch_step"] and not history["epochs"][0]["arch_step"]


def test_latency_weight_pushes_the_distribution_to_faster_blocks(space, table, splits):
    def final_latency(lam):
        config = SearchConfig(epochs=3, warmup_epochs=0, batch_size=16, arch_lr=0.3, num_samples=0, seed=0,
                              objective={"name": "additive", "lam": lam})
        search = FBNetSearch(space, table, splits, config, progress=False, log=None)
        search.run()
        return float(search.supernet.distribution_latency())

    uniform = 10.0 + 2 * (10.0 + 30.0 + 1.0) / 3
    heavy = final_latency(0.2)
    assert heavy < uniform - 10.0  # the penalty moved mass to cheap blocks
    assert heavy < final_latency(0.0)


def test_search_config_rejects_bad_values():
    with pytest.raises(ValueError, match="warmup_epochs must be in"):
        SearchConfig(epochs=2, warmup_epochs=3)
    with pytest.raises(ValueError, match="weight_mode"):
        SearchConfig(weight_mode="fixed")
    with pytest.raises(ValueError, match="unknown objective"):
        SearchConfig(objective={"name": "bogus"})


def test_candidate_evaluation_recalibrates_batch_norm_and_restores_it(space, table, splits):
    config = SearchConfig(epochs=1, warmup_epochs=1, batch_size=16, num_samples=0, seed=0, bn_batches=2)
    search = FBNetSearch(space, table, splits, config, progress=False, log=None)
    search.run_epoch()
    before = {k: v.clone() for k, v in search.supernet.state_dict().items()}
    arch = space.make_arch(["k3_e3", "k3_e1"])
    row = search.evaluate_architecture(arch, "sample")
    after = search.supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # evaluation leaves no trace
    # With the recalibration off, the evaluation sees the mixture's running statistics instead.
    search.config = SearchConfig(**{**config.to_dict(), "bn_batches": 0})
    stale = search.evaluate_architecture(arch, "sample")
    assert row["val_loss"] != pytest.approx(stale["val_loss"], rel=1e-4)


@pytest.mark.parametrize("per_block,depth", [(0.0, 0.0), (40.0, 0.0), (0.0, 3.0)])
def test_objective_latency_is_on_the_scale_of_the_tables_predictions(space, table, splits, per_block, depth):
    # per_block: the term hwnas fits; depth: an older table's term in blocks^2, still applied.
    table.correction = {"kind": "linear", "a": 2.0, "b": 100.0, "n": 6, "per_block": per_block, "depth": depth}
    search = FBNetSearch(space, table, splits, SearchConfig(epochs=1, warmup_epochs=1, num_samples=0), progress=False, log=None)
    # Under the uniform start distribution each of the 2 layers runs a block with q = 2/3
    # (hand-computed): E[n] = 4/3, E[n^2] = (4/3)^2 + 2 q (1 - q) = 20/9.
    assert float(search._distribution_latency()) == pytest.approx(
        2.0 * float(search.supernet.distribution_latency()) + 100.0 + per_block * 4 / 3 + depth * 20 / 9)
    for choices, blocks in ((["k3_e3", "skip"], 1), (["k3_e3", "k3_e3"], 2), (["skip", "skip"], 0)):
        arch = space.make_arch(choices)
        search.supernet.use_architecture(arch)
        search.supernet(splits.train.images[:2])
        # What the objective sees equals what selection and reports use (table.predict with the correction).
        assert float(search._mask_latency()) == pytest.approx(table.predict(arch))
        raw = table.predict(arch, correction="none")
        assert table.predict(arch) == pytest.approx(2.0 * raw + 100.0 + per_block * blocks + depth * blocks**2)
    search.supernet.use_architecture(None)


def test_distribution_blocks_are_the_expectations_over_architectures(space, table):
    import itertools

    net = Supernet(space, table)
    with torch.no_grad():
        for layer, logits in zip(net.layers, ([0.3, -1.0, 2.0], [1.5, 0.2, -0.4])):
            layer.arch_logits.copy_(torch.tensor(logits))
    probs = [p.tolist() for p in net.probabilities()]
    # Enumerate every architecture with its probability (layers drawn independently).
    expected = expected_squared = 0.0
    for picks in itertools.product(*(range(len(TINY_CHOICES)) for _ in net.layers)):
        weight = 1.0
        for layer, pick in enumerate(picks):
            weight *= probs[layer][pick]
        blocks = sum(TINY_CHOICES[pick] != "skip" for pick in picks)
        expected += weight * blocks
        expected_squared += weight * blocks ** 2
    assert float(net.distribution_blocks()) == pytest.approx(expected, rel=1e-6)
    assert float(net.distribution_blocks_squared()) == pytest.approx(expected_squared, rel=1e-6)
    # Under the last forward's masks: the mask-weighted count of blocks, with gradients.
    net(torch.randn(2, 1, 8, 8))
    manual = sum(float(layer.last_weights.detach() @ torch.tensor([c != "skip" for c in TINY_CHOICES], dtype=torch.float32))
                 for layer in net.layers)
    assert float(net.expected_blocks()) == pytest.approx(manual, rel=1e-6)
    net.expected_blocks().backward()
    assert all(p.grad is not None for p in net.arch_parameters())


def test_warmup_defaults_to_a_third_of_the_epochs():
    assert SearchConfig().epochs == 30 and SearchConfig().warmup_epochs == 10
    assert SearchConfig(epochs=8).warmup_epochs == 2
    assert SearchConfig(epochs=1).warmup_epochs == 0
    assert SearchConfig(epochs=8, warmup_epochs=5).warmup_epochs == 5
    # The resolved value round-trips, so a resumed run keeps it.
    assert SearchConfig(**SearchConfig(epochs=9).to_dict()).warmup_epochs == 3
    with pytest.raises(ValueError, match="warmup_epochs"):
        SearchConfig(epochs=4, warmup_epochs=5)


def test_search_config_checks_the_target_band():
    with pytest.raises(ValueError, match="non-negative fraction"):
        SearchConfig(objective={"name": "absolute", "target": 30.0}, target_band=-0.1)
    with pytest.raises(ValueError, match="target_band must be a finite number, got nan"):
        SearchConfig(objective={"name": "absolute", "target": 30.0}, target_band=float("nan"))
    with pytest.raises(ValueError, match="needs an objective with a latency target"):
        SearchConfig(objective={"name": "fbnet", "alpha": 0.2, "beta": 0.6}, target_band=0.1)
    # The field round-trips through the saved config.
    config = SearchConfig(objective={"name": "hard_target", "target": 30.0}, target_band=0.05)
    assert SearchConfig.from_dict(config.to_dict()).target_band == 0.05


@pytest.mark.parametrize("name, target, band", [("absolute", 30.0, 0.1), ("absolute", 42.0, 0.2),
                                                 ("hard_target", 30.0, 0.1), ("proxyless", 25.0, 0.3),
                                                 ("absolute", 1.0, 0.1)])
def test_target_band_puts_candidates_near_the_target_first(space, table, splits, name, target, band):
    objective = {"name": name, "target": target}
    config = SearchConfig(epochs=1, warmup_epochs=1, batch_size=16, num_samples=12, seed=1, objective=objective)
    search = FBNetSearch(space, table, splits, config, progress=False, log=None)
    search.run_epoch()
    plain = [r for r in search.select() if r["kind"] != "baseline"]
    search.config = SearchConfig(**{**config.to_dict(), "target_band": band})
    banded = [r for r in search.select() if r["kind"] != "baseline"]
    # The same candidates and values; only the order differs.
    assert sorted((r["arch"], r["score"]) for r in plain) == sorted((r["arch"], r["score"]) for r in banded)
    assert all("within_target_band" not in r for r in plain)

    def inside(latency):  # the band, written out per objective
        ratio = latency / target - 1.0
        return ratio <= band if name == "hard_target" else abs(ratio) <= band

    assert [r["within_target_band"] for r in banded] == [inside(r["predicted_latency_us"]) for r in banded]
    expected = sorted(plain, key=lambda r: r["score"])
    expected = [r for r in expected if inside(r["predicted_latency_us"])] + \
               [r for r in expected if not inside(r["predicted_latency_us"])]
    assert [r["arch"] for r in banded] == [r["arch"] for r in expected]
    if not any(inside(r["predicted_latency_us"]) for r in plain):
        # Nobody inside the band: the plain ranking stands.
        assert [r["arch"] for r in banded] == [r["arch"] for r in plain]


def test_checkpoint_from_before_a_new_config_field_still_resumes(space, table, splits):
    config = SearchConfig(epochs=2, warmup_epochs=1, batch_size=16, num_samples=0, seed=0)
    search = FBNetSearch(space, table, splits, config, progress=False, log=None)
    search.run_epoch()
    state = {**search.state_dict(), "epoch": search.epoch}  # as RunDir.save_checkpoint stores it
    del state["config"]["target_band"]  # written before the field existed
    resumed = FBNetSearch(space, table, splits, config, progress=False, log=None)
    resumed.load_state_dict(state)
    assert resumed.epoch == 1
    other = FBNetSearch(space, table, splits, SearchConfig(**{**config.to_dict(), "weight_lr": 0.01}),
                        progress=False, log=None)
    with pytest.raises(ValueError, match=r"weight_lr: 0.05 in the checkpoint, 0.01 now"):
        other.load_state_dict(state)


def test_search_config_refuses_values_of_the_wrong_kind():
    # epochs=2.5 ran 3 epochs, True counted as 1, a float batch size failed in the loader.
    for field, value, message in (("epochs", 2.5, "epochs must be an integer, got 2.5"),
                                  ("epochs", True, "epochs must be an integer, got True"),
                                  ("batch_size", 16.0, "batch_size must be an integer"),
                                  ("seed", 1.5, "seed must be an integer"),
                                  ("seed", 2**70, r"seed must be in \[0, 2\*\*63\)"),
                                  ("weight_lr", float("inf"), "weight_lr must be a finite number, got inf"),
                                  ("weight_momentum", -5, r"weight_momentum must be in \[0, 1\)"),
                                  ("weight_decay", -1, "weight decays must be >= 0"),
                                  ("arch_weight_decay", float("nan"), "arch_weight_decay must be a finite number")):
        with pytest.raises(ValueError, match=message):
            SearchConfig(**{field: value})


def test_a_search_without_a_latency_table_runs_to_its_end(space, splits):
    config = SearchConfig(epochs=2, warmup_epochs=1, batch_size=16, num_samples=2)
    result = FBNetSearch(space, None, splits, config, progress=False, log=None).run()
    assert [record["expected_latency_us"] for record in result.history] == [None, None]
    assert len(result.architecture.choices) == len(space.layers)


def test_a_target_below_the_cheapest_architecture_is_reported(space, table, splits):
    # The cheapest architecture is skip, skip: 5 + 1 + 1 + 5 = 12 us on the synthetic table.
    lines = []
    config = SearchConfig(epochs=1, warmup_epochs=0, batch_size=16, num_samples=2, target_band=0.1,
                          objective={"name": "hard_target", "target": 1.0})
    search = FBNetSearch(space, table, splits, config, progress=False, log=lines.append)
    assert search.cheapest_predicted_latency() == pytest.approx(12.0)
    assert lines == ["warning: the latency target 1 us is below the cheapest architecture of the space (12 us "
                     "predicted, every layer's cheapest candidate): the search will end over its target"]
    search.run()
    assert any(line.startswith("warning: none of the") and "within the target band" in line for line in lines)
    # A reachable target says nothing of the kind.
    lines.clear()
    FBNetSearch(space, table, splits, SearchConfig(**{**config.to_dict(), "objective": {
        "name": "hard_target", "target": 12.0}}), progress=False, log=lines.append)
    assert lines == []


def test_a_kill_after_the_last_checkpoint_leaves_a_whole_history_on_resume(space, table, splits, tmp_path):
    config = SearchConfig(epochs=2, warmup_epochs=1, batch_size=16, num_samples=2)
    killed = FBNetSearch(space, table, splits, config, run=RunDir(tmp_path / "r"), progress=False, log=None)
    killed.run_epoch()
    killed.run_dir.save_checkpoint("search", killed.epoch, killed.state_dict())
    killed.write_history()
    killed.run_epoch()  # the last epoch: checkpointed, then killed before its history write
    killed.run_dir.save_checkpoint("search", killed.epoch, killed.state_dict())
    assert [r["epoch"] for r in read_history(str(tmp_path / "r" / "history.json"))["epochs"]] == [1]
    FBNetSearch(space, table, splits, config, run=RunDir(tmp_path / "r"), progress=False, log=None).run()
    assert [r["epoch"] for r in read_history(str(tmp_path / "r" / "history.json"))["epochs"]] == [1, 2]
