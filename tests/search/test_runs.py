import json
import os

import pytest
import torch

from hwnas.runs import RunDir, RunInUse, atomic_write_json, capture_rng_state, read_json, restore_rng_state


def test_checkpoints_pointer_and_pruning(tmp_path):
    run = RunDir(tmp_path / "run", keep_checkpoints=2)
    for epoch in (1, 2, 3):
        run.save_checkpoint("search", epoch, {"value": torch.tensor([epoch])})
    names = sorted(os.listdir(tmp_path / "run" / "checkpoints"))
    assert names == ["search-epoch-0002.pt", "search-epoch-0003.pt", "search-latest.json"]
    state = run.load_latest("search")
    assert state["epoch"] == 3 and torch.equal(state["value"], torch.tensor([3]))
    assert run.load_latest("retrain") is None
    assert not [n for n in os.listdir(tmp_path / "run" / "checkpoints") if n.startswith(".tmp-")]


def test_a_checkpoint_written_without_its_pointer_update_is_ignored(tmp_path):
    # Simulates a kill after the checkpoint file but before the pointer moved on.
    run = RunDir(tmp_path / "run", keep_checkpoints=None)
    run.save_checkpoint("search", 1, {"value": 1})
    torch.save({"garbage": True}, tmp_path / "run" / "checkpoints" / "search-epoch-0002.pt")
    assert run.load_latest("search")["value"] == 1


def test_unknown_versions_and_missing_format_are_refused(tmp_path):
    path = tmp_path / "x.json"
    with pytest.raises(ValueError, match="carries 'format' and 'version'"):
        atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"format": "hwnas.thing", "version": 9})
    with pytest.raises(ValueError, match="version 9 is not supported"):
        read_json(path, "hwnas.thing", (1,))
    with pytest.raises(ValueError, match="format is 'hwnas.thing', expected 'hwnas.other'"):
        read_json(path, "hwnas.other", (1,))
    run = RunDir(tmp_path / "run")
    run.save_checkpoint("search", 1, {})
    pointer = tmp_path / "run" / "checkpoints" / "search-latest.json"
    data = json.loads(pointer.read_text())
    pointer.write_text(json.dumps({**data, "version": 2}))
    with pytest.raises(ValueError, match="version 2 is not supported"):
        run.load_latest("search")
    with pytest.raises(FileNotFoundError, match="not an hwnas run folder"):
        RunDir(tmp_path / "empty").read_config()


def test_rng_state_round_trip():
    gen = torch.Generator().manual_seed(5)
    state = capture_rng_state({"shuffler": gen})
    first = (torch.rand(3), torch.randperm(10, generator=gen))
    restore_rng_state(state, {"shuffler": gen})
    second = (torch.rand(3), torch.randperm(10, generator=gen))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    with pytest.raises(ValueError, match="no state for random generator 'other'"):
        restore_rng_state(state, {"other": gen})


def test_written_files_get_the_mode_a_plain_open_would_and_folders_are_refused(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"format": "t", "version": 1})
    finally:
        os.umask(old)
    # Temporary files are private (0600) until renamed; the result follows the umask.
    assert (os.stat(tmp_path / "a.json").st_mode & 0o777) == 0o644
    with pytest.raises(IsADirectoryError, match="is a folder; give a file path"):
        atomic_write_json(tmp_path, {"format": "t", "version": 1})
    assert sorted(os.listdir(tmp_path)) == ["a.json"]


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one_or_is_named(tmp_path):
    run = RunDir(tmp_path / "run", keep_checkpoints=2)
    for epoch in (1, 2, 3):
        run.save_checkpoint("search", epoch, {"value": epoch})
    latest = tmp_path / "run" / "checkpoints" / "search-epoch-0003.pt"
    latest.write_bytes(latest.read_bytes()[:100])  # damaged on disk
    with pytest.warns(UserWarning, match=r"search-epoch-0003.pt: the checkpoint cannot be read .* resuming from the "
                                         r"checkpoint .*search-epoch-0002.pt instead"):
        assert run.load_latest("search")["value"] == 2
    previous = tmp_path / "run" / "checkpoints" / "search-epoch-0002.pt"
    previous.write_bytes(b"")
    with pytest.raises(ValueError, match=r"search-epoch-0003.pt: the checkpoint cannot be read .*; no kept "
                                         r"checkpoint of 'search' can be read to resume from"):
        run.load_latest("search")


def test_a_missing_pointer_resumes_from_the_newest_checkpoint_silently(tmp_path, recwarn):
    # A kill between the first checkpoint and its pointer, or a pointer deleted by hand
    # (which restarted the run from epoch 0 before): the checkpoint files are whole.
    run = RunDir(tmp_path / "run", keep_checkpoints=2)
    for epoch in (1, 2, 3):
        run.save_checkpoint("search", epoch, {"value": epoch})
    (tmp_path / "run" / "checkpoints" / "search-latest.json").unlink()
    assert run.load_latest("search")["value"] == 3
    assert not recwarn.list


@pytest.mark.parametrize("damage", ["empty pointer", "pointer without file", "delete newest"])
def test_a_hand_damaged_pointer_or_missing_checkpoint_resumes_from_the_newest_readable(tmp_path, damage):
    run = RunDir(tmp_path / "run", keep_checkpoints=2)
    for epoch in (1, 2, 3):
        run.save_checkpoint("search", epoch, {"value": epoch})
    folder = tmp_path / "run" / "checkpoints"
    if damage == "pointer without file":  # a KeyError before
        (folder / "search-latest.json").write_text(json.dumps({"format": "hwnas.checkpoint_pointer", "version": 1,
                                                               "epoch": 7}))
        expected, message = 3, "search-epoch-0007.pt, which does not exist"
    elif damage == "empty pointer":  # a hard error before
        (folder / "search-latest.json").write_text("")
        expected, message = 3, "search-latest.json cannot be read"
    else:  # a hard error before, though epoch 2 was kept
        (folder / "search-epoch-0003.pt").unlink()
        expected, message = 2, "search-epoch-0003.pt, which does not exist"
    with pytest.warns(UserWarning, match=message + r".*resuming from the checkpoint .*search-epoch-000"
                      + str(expected) + r".pt instead \(the run folder was damaged or edited by hand\)"):
        assert run.load_latest("search")["value"] == expected
    for name in os.listdir(folder):
        (folder / name).unlink()
    # Nothing kept, yet a pointer names a checkpoint: an error, not a silent restart.
    run.save_checkpoint("search", 1, {"value": 1})
    (folder / "search-epoch-0001.pt").unlink()
    with pytest.raises(ValueError, match="which does not exist; no kept checkpoint of 'search' can be read"):
        run.load_latest("search")


def test_remove_temporaries_clears_what_interrupted_writes_left(tmp_path):
    run = RunDir(tmp_path / "run")
    run.save_checkpoint("search", 1, {"value": 1})
    left = [tmp_path / "run" / "checkpoints" / ".tmp-abc-search-epoch-0002.pt", tmp_path / "run" / ".tmp-x-history.json"]
    for path in left:
        path.write_bytes(b"partial")
    assert sorted(run.remove_temporaries()) == sorted(map(str, left))
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["search-epoch-0001.pt", "search-latest.json"]
    assert run.load_latest("search")["value"] == 1


def test_a_run_folder_is_held_by_one_process_at_a_time(tmp_path):
    first = RunDir(tmp_path / "run")
    first.lock()
    first.lock()  # taking it again in the same RunDir is fine
    # Another holder (another open file: as another process would) is refused.
    with pytest.raises(RunInUse, match="is in use by another hwnas process"):
        RunDir(tmp_path / "run").lock()
    first._lock_handle.close()  # what the OS does when the process ends
    RunDir(tmp_path / "run").lock()
