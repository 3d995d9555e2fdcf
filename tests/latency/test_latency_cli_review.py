"""`hwnas latency build|validate` review fixes: resuming with the table's own clock and drift
setting, a table's space rebuilt at its shape, and options refused while parsing.

Tables of a tiny user-defined space (the ``tiny_space`` fixture saved as a file) keep the
measured builds to a fraction of a second.
"""

import argparse
import json
from dataclasses import replace

import pytest

from hwnas.latency import commands
from hwnas.latency.build import build_table
from hwnas.latency.table import LatencyTable, TableEntry
from hwnas.latency.targets import get_target

FAST = ["--rel-ci", "0.5", "--budget", "0.01", "--quiet"]


class _Stop(Exception):
    pass


@pytest.fixture
def space_file(tiny_space, tmp_path):
    path = tmp_path / "tiny_space.json"
    tiny_space.save(path)
    return path


def _build(space_file, out, *extra):
    return commands.main(["latency", "build", "--space", str(space_file), "--resolution", "8", "--out", str(out),
                          *FAST, *extra])


def _parser():
    parser = argparse.ArgumentParser(prog="hwnas")
    commands.add_subparser(parser.add_subparsers(dest="command"))
    return parser


def _partial_table(space, path, timing, entries=2):
    """A table at ``path`` with ``entries`` entries measured, as an interrupted build leaves it."""
    seen = []

    def stop(key, entry):
        seen.append(key)
        if len(seen) == entries:
            raise _Stop

    with pytest.raises(_Stop):
        build_table(space, get_target("eager"), path, config=timing, progress=False, on_entry=stop)
    return LatencyTable.load(path)


# ---------------------------------------------------------------------- 1. resuming keeps clock and drift setting


def test_build_refuses_to_continue_a_table_with_another_clock(tiny_space, fast_timing, tmp_path):
    path = tmp_path / "t.json"
    _partial_table(tiny_space, path, fast_timing)
    before = path.read_text()
    with pytest.raises(ValueError, match=r"t.json: its entries were timed with the 'steady' clock, this build "
                                         r"would time with 'thread_cpu'.*--clock steady"):
        build_table(tiny_space, get_target("eager"), path, config=replace(fast_timing, clock="thread_cpu"),
                    progress=False)
    assert path.read_text() == before
    # Restarting from scratch may change the clock.
    table = build_table(tiny_space, get_target("eager"), path, config=replace(fast_timing, clock="thread_cpu"),
                        resume=False, progress=False)
    assert table.complete and table.timing_clock() == "thread_cpu"


def test_build_refuses_to_continue_with_another_drift_setting(tiny_space, fast_timing, tmp_path):
    from hwnas.latency.drift import drift_corrected_target

    plain = tmp_path / "plain.json"
    _partial_table(tiny_space, plain, fast_timing)
    drifted = drift_corrected_target(get_target("eager"), tiny_space)
    with pytest.raises(ValueError, match="built without drift correction"):
        build_table(tiny_space, drifted, plain, config=fast_timing, progress=False)

    corrected = tmp_path / "drift.json"
    drifted.calibrate(fast_timing)  # as the command line does: the baseline first, then the build
    table = build_table(tiny_space, drifted, corrected, config=fast_timing, progress=False,
                        notes={"drift_correction": drifted.describe()})
    stored = table.notes["drift_correction"]
    with pytest.raises(ValueError, match="built with drift correction"):
        build_table(tiny_space, get_target("eager"), corrected, config=fast_timing, progress=False)
    # Another baseline is another scale, even with the same reference model.
    fresh = drift_corrected_target(get_target("eager"), tiny_space)
    with pytest.raises(ValueError, match="drift reference and baseline"):
        build_table(tiny_space, fresh, corrected, config=fast_timing, progress=False)
    same = drift_corrected_target(get_target("eager"), tiny_space, stored)
    assert build_table(tiny_space, same, corrected, config=fast_timing, progress=False).complete


def test_check_resumable_accepts_a_table_with_nothing_measured(tiny_space):
    from hwnas.latency.build import check_resumable

    empty = LatencyTable.for_space(tiny_space, {"target": "eager"})
    check_resumable(empty, "thread_cpu", True)  # nothing to mix with


def test_cli_build_refuses_another_clock_or_drift_setting_and_keeps_the_file(space_file, tmp_path, capsys):
    out = tmp_path / "t.json"
    assert _build(space_file, out) == 0
    before = out.read_text()
    capsys.readouterr()
    assert _build(space_file, out, "--clock", "thread_cpu") == 2
    assert "timed with the 'steady' clock" in capsys.readouterr().err
    assert _build(space_file, out, "--drift-correction") == 2
    assert "built without drift correction" in capsys.readouterr().err
    assert out.read_text() == before  # notes.timing not rewritten


def test_cli_build_continues_a_table_on_its_own_clock(space_file, tmp_path, fast_timing, tiny_space, capsys):
    out = tmp_path / "t.json"
    _partial_table(tiny_space, out, replace(fast_timing, clock="thread_cpu"))
    assert _build(space_file, out) == 0  # no --clock: the table's
    table = LatencyTable.load(out)
    assert table.complete and table.timing_clock() == "thread_cpu"


def test_timing_notes_describe_only_what_was_measured(tiny_space, fast_timing, tmp_path):
    path = tmp_path / "t.json"
    _partial_table(tiny_space, path, fast_timing, entries=3)
    slower = replace(fast_timing, budget_s=0.02)
    table = build_table(tiny_space, get_target("eager"), path, config=slower, progress=False)
    # The first entries keep the settings they were measured with; the rest are noted apart.
    assert table.notes["timing"]["budget_s"] == fast_timing.budget_s
    (resumed,) = table.notes["timing_resumed"]
    assert resumed["timing"]["budget_s"] == 0.02 and len(resumed["entries"]) == len(table.required_keys()) - 3
    # A complete table measures nothing: its notes stay as they are.
    before = json.loads(path.read_text())["notes"]
    build_table(tiny_space, get_target("eager"), path, config=replace(fast_timing, budget_s=0.05), progress=False)
    assert json.loads(path.read_text())["notes"] == before


# ---------------------------------------------------------------------- 2. validate --clock thread_cpu


def test_cli_validate_refuses_thread_cpu_for_a_table_of_several_threads(space_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "t.json"
    assert _build(space_file, out) == 0
    data = json.loads(out.read_text())
    data["fingerprint"]["threads"] = 2
    out.write_text(json.dumps(data))
    before = out.read_text()
    measured = []
    monkeypatch.setattr("hwnas.latency.validation.validate_table", lambda *a, **k: measured.append(1))
    capsys.readouterr()
    assert commands.main(["latency", "validate", "--table", str(out), "--space-file", str(space_file),
                          "--clock", "thread_cpu", "--num-archs", "2", "--calibration", "0", *FAST]) == 2
    err = capsys.readouterr().err
    assert "--clock thread_cpu times the calling thread only" in err and "measured with 2" in err
    assert not measured and out.read_text() == before


def test_validate_clock_help_does_not_name_a_threads_option(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["latency", "validate", "-h"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--threads" not in text and "needs a table measured with one thread" in text


# ---------------------------------------------------------------------- 3. a table's space at its shape


def _synthetic(space, **kwargs):
    table = LatencyTable.for_space(space, get_target("eager").fingerprint(), **kwargs)
    for i, key in enumerate(table.required_keys()):
        table.entries[key] = TableEntry(float(10 + i), key.split("|")[0], 1, 1, 1, (1, 1))
    return table


def test_table_stores_the_options_of_its_space(tmp_path):
    from hwnas.spaces import get_space

    space = get_space("fbnet_small", resolution=8, width=0.25, in_channels=1, choices=["k3_e1", "skip"])
    table = _synthetic(space)
    table.save(tmp_path / "t.json")
    loaded = LatencyTable.load(tmp_path / "t.json")
    assert loaded.space_options == {"in_channels": 1, "choices": ["k3_e1", "skip"]}
    assert loaded.space_shape_options() == loaded.space_options


@pytest.mark.parametrize("old_format", [True, False], ids=["saved-before-options", "with-options"])
@pytest.mark.parametrize("with_space_file", [False, True], ids=["by-name", "space-file"])
def test_cli_validates_a_table_of_a_registered_space_at_another_shape(tmp_path, capsys, old_format,
                                                                      with_space_file):
    from hwnas.spaces import get_space

    # As a digits search saves it: fbnet_small with 1 input channel and 10 classes.
    space = get_space("fbnet_small", resolution=8, width=0.25, in_channels=1, num_classes=10)
    path = tmp_path / "latency_table.json"
    data = _synthetic(space).to_dict()
    if old_format:
        del data["space_options"]
    path.write_text(json.dumps(data))
    extra = []
    if with_space_file:
        space.save(tmp_path / "space.json")  # the run's own space document
        extra = ["--space-file", str(tmp_path / "space.json")]
    rc = commands.main(["latency", "validate", "--table", str(path), "--num-archs", "2", "--calibration", "0",
                        *extra, *FAST])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "MAPE" in captured.out


def test_cli_validate_names_a_space_file_of_another_shape(tmp_path, capsys):
    from hwnas.spaces import get_space

    table = _synthetic(get_space("fbnet_small", resolution=8, width=0.25, in_channels=1, choices=["k3_e1", "skip"]))
    table.save(tmp_path / "t.json")
    get_space("fbnet_small", resolution=8, width=0.25).save(tmp_path / "space.json")  # all 9 candidates
    assert commands.main(["latency", "validate", "--table", str(tmp_path / "t.json"), "--space-file",
                          str(tmp_path / "space.json"), "--num-archs", "2", "--calibration", "0", *FAST]) == 2
    assert f"--space-file {tmp_path / 'space.json'} does not define the space of the table" in capsys.readouterr().err


def test_cli_builds_for_given_in_channels_and_classes_and_validates_it(space_file, tmp_path, capsys):
    out = tmp_path / "t.json"
    assert _build(space_file, out, "--in-channels", "1", "--num-classes", "7") == 0
    table = LatencyTable.load(out)
    assert table.stem_key.startswith("stem|c1-") and table.head_key.split("|")[1].endswith("-7")
    # The file says 3 channels and 4 classes: validation shapes it like the table.
    assert commands.main(["latency", "validate", "--table", str(out), "--space-file", str(space_file),
                          "--num-archs", "2", "--calibration", "0", *FAST]) == 0
    assert "MAPE" in capsys.readouterr().out


def test_build_options_give_a_registered_space_its_shape():
    from hwnas.latency.table import head_key, stem_key

    args = _parser().parse_args(["latency", "build", "--space", "fbnet_small", "--resolution", "8", "--width", "0.5",
                                 "--in-channels", "1", "--num-classes", "10", "--out", "t.json"])
    space = commands._space(args.space, args.resolution, args.width, in_channels=args.in_channels,
                            num_classes=args.num_classes)
    assert stem_key(space) == "stem|c1-8|s1|8x8" and head_key(space) == "head|c176-10|s1|1x1"
    for bad in ("0", "x"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["latency", "build", "--space", "fbnet_small", "--resolution", "8",
                                  "--in-channels", bad, "--out", "t.json"])


# ---------------------------------------------------------------------- 4. --flush-mb


@pytest.mark.parametrize("value", ["1e12", "-5", "nan", "inf", "5000", "many"])
def test_flush_mb_is_refused_while_parsing(value, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["latency", "build", "--space", "fbnet_small", "--resolution", "8", "--out", "t.json",
                              f"--flush-mb={value}"])
    assert "argument --flush-mb: must be a number of MiB" in capsys.readouterr().err


def test_flush_mb_accepts_zero_to_the_cap():
    memory = commands._physical_memory_mb()
    cap = commands.MAX_FLUSH_MB if memory is None else min(commands.MAX_FLUSH_MB, memory / 2)
    for value in (0.0, 2.5, cap):
        args = _parser().parse_args(["latency", "build", "--space", "fbnet_small", "--resolution", "8",
                                     "--out", "t.json", "--flush-mb", repr(value)])
        assert args.flush_mb == value


# ---------------------------------------------------------------------- 5. never overwrite a file that is not a table


@pytest.mark.parametrize("content, match", [
    (json.dumps({"format": "hwnas.run_config", "version": 1}), "a document of format 'hwnas.run_config'"),
    ("not json at all", "not a JSON document"),
    (json.dumps([1, 2, 3]), "JSON without a latency table's format"),
], ids=["run-config", "not-json", "list"])
def test_build_restart_refuses_to_overwrite_another_file(space_file, tmp_path, capsys, content, match):
    out = tmp_path / "config.json"
    out.write_text(content)
    for extra in (["--restart"], []):
        assert _build(space_file, out, *extra) == 2
        err = capsys.readouterr().err
        assert f"{out} exists and is not a latency table" in err and match in err
    assert out.read_text() == content
    from hwnas.latency.build import check_overwritable

    with pytest.raises(ValueError, match="is not a latency table"):
        check_overwritable(out)


def test_build_restart_replaces_a_damaged_table(space_file, tmp_path):
    out = tmp_path / "t.json"
    assert _build(space_file, out) == 0
    data = json.loads(out.read_text())
    data["resolution"] = "abc"  # a table still, but one that no longer loads
    out.write_text(json.dumps(data))
    assert _build(space_file, out, "--restart") == 0
    assert LatencyTable.load(out).complete


# ---------------------------------------------------------------------- 6. validate's counts


@pytest.mark.parametrize("bad, match", [
    (["--calibration", "1"], "argument --calibration: must be 0 (no correction) or at least 2"),
    (["--num-archs", "1"], "argument --num-archs: must be at least 2"),
    (["--refine-strength", "-0.1"], "argument --refine-strength: must be a finite number >= 0"),
    (["--refine-strength", "nan"], "argument --refine-strength: must be a finite number >= 0"),
])
def test_validate_counts_are_refused_while_parsing(bad, match, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["latency", "validate", "--table", "t.json", *bad])
    assert match in capsys.readouterr().err


def test_validate_refuses_refine_strength_without_calibration_before_reading_the_table(tmp_path, capsys):
    # The table does not even exist: the options are checked first.
    assert commands.main(["latency", "validate", "--table", str(tmp_path / "none.json"), "--refine-strength", "0.03",
                          "--calibration", "0"]) == 2
    err = capsys.readouterr().err
    assert "--refine-strength" in err and "--calibration 2 or more" in err


def test_validate_table_checks_its_counts_before_measuring(tiny_space):
    from hwnas.latency.validation import validate_table

    class Refusing(type(get_target("eager"))):
        def measure(self, *args, **kwargs):  # pragma: no cover - must not be reached
            raise AssertionError("measured before the arguments were checked")

    table = _synthetic(tiny_space)
    target = Refusing()
    with pytest.raises(ValueError, match="num_calibration must be 0 .* or at least 2"):
        validate_table(table, tiny_space, target, num_archs=2, num_calibration=1, progress=False)
    with pytest.raises(ValueError, match="refine_strength .* needs num_calibration >= 2"):
        validate_table(table, tiny_space, target, num_archs=2, num_calibration=0, refine_strength=0.03,
                       progress=False)


# ---------------------------------------------------------------------- 7. help texts


def test_help_gives_budget_and_calibration_defaults(capsys):
    texts = {}
    for command in ("build", "validate"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["latency", command, "-h"])
        texts[command] = " ".join(capsys.readouterr().out.split())
    assert "seconds per measurement at most (default 1.5)" in texts["build"]
    assert "seconds per measurement at most (default 3)" in texts["validate"]
    options = texts["validate"].split("options:")[1]  # past the usage line
    assert "(default 10)" in options.split("--calibration CALIBRATION")[1].split("--seed")[0]


@pytest.mark.parametrize("entry", ["commands", "cli"])
def test_latency_without_a_sub_command_names_the_sub_commands(entry, capsys):
    if entry == "cli":
        from hwnas.cli import main
    else:
        main = commands.main
    assert main(["latency"]) == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "latency_command" not in text
    for name in ("build", "validate", "overhead"):
        assert name in text


# ---------------------------------------------------------------------- 8. binary files


def test_binary_table_or_space_file_is_named(tmp_path, capsys):
    binary = tmp_path / "image.json"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert commands.main(["latency", "validate", "--table", str(binary), *FAST]) == 2
    assert str(binary) in capsys.readouterr().err
    assert commands.main(["latency", "build", "--space", str(binary), "--resolution", "8",
                          "--out", str(tmp_path / "t.json"), *FAST]) == 2
    assert str(binary) in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_validate_refuses_a_plot_extension_it_cannot_write_before_reading_the_table(tmp_path, capsys):
    assert commands.main(["latency", "validate", "--table", str(tmp_path / "none.json"),
                          "--plot", str(tmp_path / "p.txt")]) == 2
    assert "a figure is written as .png, .svg, .pdf, not .txt" in capsys.readouterr().err


def test_cli_validate_leaves_a_run_tables_correction_as_it_is(tmp_path, capsys):
    from hwnas.runs import RunDir
    from hwnas.spaces import get_space

    space = get_space("fbnet_small", resolution=8, width=0.25, in_channels=1, num_classes=10)
    run = RunDir(tmp_path / "run")
    run.write_config({"command": "search"})
    path = tmp_path / "run" / "latency_table.json"
    path.write_text(json.dumps(_synthetic(space).to_dict()))
    before = path.read_bytes()
    rc = commands.main(["latency", "validate", "--table", str(path), "--num-archs", "2", "--calibration", "2", *FAST])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"belongs to the run {tmp_path / 'run'}: its correction is left as it is" in captured.err
    assert "linear correction" in captured.out  # fitted and reported
    assert path.read_bytes() == before
