"""The acceptance experiment's second test set: every training scored on the images ``--limit`` left out."""

import argparse
import os

import pytest
from _search_fixtures import tiny_dataset

from hwnas.data import prepare_splits, rest_split
from hwnas.runs import RunDir
from hwnas.search.baselines import mobilenet_v2_style
from hwnas.search.pipeline import train_architecture
from hwnas.search.retrain import TrainConfig, evaluate

def test_rest_accuracies_score_each_rows_trainings_on_the_left_out_images(experiment, tmp_path):
    data = tiny_dataset(n=90)
    splits = prepare_splits(data, 8, seed=0, limit=60)
    rest = rest_split(data, splits, 60)
    assert len(rest) == 30
    kwargs = dict(resolution=8, in_channels=1, num_classes=3)
    # A "searched" architecture of a registered space (the script rebuilds it from its JSON)
    # and the row's baseline, each trained with the row's two training seeds.
    searched_space, searched_arch = mobilenet_v2_style("fbnet_small", kwargs, 0.25, 0.25)
    base_space, base_arch = mobilenet_v2_style("fbnet_small", kwargs, 0.3, 0.25)
    args = argparse.Namespace(seeds=[4, 7], retrain_seeds=2, train_epochs=4)
    out, weight = str(tmp_path), 0.7
    # The names the script gave its run folders so far: a rename would orphan finished runs.
    assert experiment._search_folder(out, "digits", "eager", "w0.7", 4) == os.path.join(out, "digits-eager-w0.7-s4")
    assert experiment._baseline_folder(out, "digits", weight, 0.3, 0.25, 1004) == os.path.join(
        out, "digits-baseline-w0.7-bw0.3-bd0.25-s1004")
    # Each training of the row: (search seed, training seed), with the accuracies in the
    # script's order (searched: the searches' own trainings first; baseline: seed by seed).
    searched_order = [(4, 4), (7, 7), (4, 1004), (7, 1007)]
    baseline_order = [(4, 4), (4, 1004), (7, 7), (7, 1007)]
    test, expected = {}, {}
    for seed in args.seeds:
        folder = experiment._search_folder(out, "digits", "eager", f"w{weight:g}", seed)
        os.makedirs(folder)
        searched_arch.save(os.path.join(folder, "architecture.json"))
        for k, train_seed in enumerate(experiment._training_seeds(seed, 2)):
            config = TrainConfig(epochs=4, batch_size=16, seed=train_seed)
            runs = (("searched", searched_space, searched_arch,
                     folder if k == 0 else f"{folder}-train-s{train_seed}", "retrain"),
                    ("baseline", base_space, base_arch,
                     experiment._baseline_folder(out, "digits", weight, 0.3, 0.25, train_seed), "baseline"))
            for side, space, arch, run_folder, stage in runs:
                trained = train_architecture(space, arch, splits, config, RunDir(run_folder), None, stage=stage,
                                             progress=False, log=None)
                test[side, seed, train_seed] = trained["test_accuracy"]
                # Independent reference: the model in hand, scored with the plain evaluation.
                expected[side, seed, train_seed] = evaluate(trained["model"], rest)[1]

    def fresh_row(searched_test):
        return {"weight": weight, "accuracies": searched_test,
                "baseline": {"width": 0.3, "depth": 0.25, "arch": base_arch.to_string(),
                             "accuracies": [test["baseline", *p] for p in baseline_order]}}

    row = fresh_row([test["searched", *p] for p in searched_order])
    experiment._add_rest_accuracies(args, "digits", out, row, kwargs, splits, rest)
    ours = [expected["searched", *p] for p in searched_order]
    theirs = [expected["baseline", *p] for p in baseline_order]
    assert row["rest_size"] == 30
    assert row["rest_accuracies"] == pytest.approx(ours)
    assert row["baseline"]["rest_accuracies"] == pytest.approx(theirs)
    assert row["rest_accuracy"][0] == pytest.approx(sum(ours) / 4)
    assert experiment._accuracy_gap(row, "rest_accuracies")[0] == pytest.approx(sum(ours) / 4 - sum(theirs) / 4)
    assert "\n" in experiment._rest_text(row) and "30 images" in experiment._rest_text(row)

    # Checkpoints that do not score the row's test accuracies are not the row's trainings,
    # and nothing is added to the row.
    wrong = fresh_row([test["searched", *p] + 0.5 for p in searched_order])
    with pytest.raises(ValueError, match="not the row's trainings"):
        experiment._add_rest_accuracies(args, "digits", out, wrong, kwargs, splits, rest)
    assert "rest_size" not in wrong and "rest_accuracies" not in wrong["baseline"]
    # A training that did not finish (or was never run) is named, not skipped.
    longer = argparse.Namespace(seeds=[4, 7], retrain_seeds=2, train_epochs=5)
    with pytest.raises(FileNotFoundError, match="no finished retrain training"):
        experiment._add_rest_accuracies(longer, "digits", out, row, kwargs, splits, rest)
