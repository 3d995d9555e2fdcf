import json

import pytest

from hwnas import cli, models
from hwnas.spaces import Architecture, get_space
from hwnas.spaces.figure import architecture_figure, draw_architecture

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_draw_architecture_writes_png(tmp_path):
    out = tmp_path / "figs" / "a.png"
    space = get_space("fbnet", head_channels=1504)
    draw_architecture((space, models.architecture("fbnet_a")), out)
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    draw_architecture(get_space("hurricane").sample(seed=0), tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes().startswith(PNG_MAGIC)


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]


def _legend_labels(fig):
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_figure_title_key_and_legend_of_what_is_used():
    space = get_space("fbnet_small", resolution=8, in_channels=1)
    arch = space.make_arch(["k3_e1"] + ["k3_e6"] * 20 + ["skip"])
    fig = architecture_figure(arch, space=space, subtitle="searched on digits for eager")
    # The subtitle adds to the default title (space, resolution, width) instead of replacing it.
    assert fig.get_suptitle() == "fbnet_small  8x8  width 1\nsearched on digits for eager"
    assert "numbers: output channels, /s2: stride 2;  box height: expansion (e1..e6)" in _texts(fig)
    labels = _legend_labels(fig)
    assert "k=3" in labels and not {"k=5", "k=7", "groups=2", "squeeze-and-excitation"} & set(labels)
    assert architecture_figure(arch, space=space, title="mine").get_suptitle() == "mine"


def test_projection_skip_is_marked_1x1():
    space = get_space("fbnet_small", resolution=8, in_channels=1)
    # Layer 0 keeps its shape (identity skip), layer 1 opens a stride-2 stage (a 1x1 conv projection).
    assert space.layers[0].stride == 1 and space.layers[0].c_in == space.layers[0].c_out
    assert space.layers[1].c_in != space.layers[1].c_out
    fig = architecture_figure(space.make_arch(["skip", "skip"] + ["k5_e1_g2"] * 20), space=space)
    assert _texts(fig).count("1x1") == 1
    labels = _legend_labels(fig)
    assert "skip (identity)" in labels and "skip with 1x1 conv projection (marked 1x1)" in labels
    assert {"k=5", "groups=2"} <= set(labels)
    # Without the space the shapes are unknown: no projection is claimed, no channel key.
    fig = architecture_figure(space.make_arch(["skip", "skip"] + ["k5_e1_g2"] * 20))
    assert "1x1" not in _texts(fig) and "skip" in _legend_labels(fig)
    assert "box height: expansion (e1..e6)" in _texts(fig)


@pytest.fixture
def long_block_name():
    """A registered block with a long name (removed again, as test_blocks.py does)."""
    import torch.nn as nn

    from hwnas.spaces import blocks

    name = "my_extremely_long_custom_block_name_v2"
    blocks.register_block(name, lambda c_in, c_out, stride: nn.Identity())
    yield name
    del blocks.BLOCK_REGISTRY[name]
    del blocks._CUSTOM_SPECS[name]


def test_long_architecture_wraps_and_nothing_is_cut_off(long_block_name):
    arch = Architecture(space="x", space_version=1, choices=[long_block_name, "k7_e6", "k3_e1_g2"] * 20,
                        resolution=32, stage_lengths=[20, 20, 20])
    fig = architecture_figure(arch)
    assert len(fig.axes) == 2  # 60 layers: two rows of 30
    fig.canvas.draw()
    frame = fig.bbox
    for text in [t for ax in fig.axes for t in ax.texts] + fig.texts:
        box = text.get_window_extent()
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text
    legend = fig.legends[0].get_window_extent()
    separators = [line for ax in fig.axes for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert len(separators) == 2  # stages start at layers 20 and 40
    assert not any(line.get_window_extent().overlaps(legend) for line in separators)


def test_cli_show_with_figure(tmp_path, capsys):
    out = tmp_path / "c.png"
    assert cli.main(["show", "fbnet_c", "--figure", str(out)]) == 0
    text = capsys.readouterr().out
    assert "k5_e6" in text and "184x7x7" in text
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_cli_profile_zoo_and_arch_file(tmp_path, capsys):
    assert cli.main(["profile", "mobilenet_v2", "--summary"]) == 0
    assert "3,504,872" in capsys.readouterr().out
    arch_path = tmp_path / "arch.json"
    get_space("fbnet_small", resolution=28, in_channels=1).sample(seed=1).save(arch_path)
    json_path = tmp_path / "p.json"
    assert cli.main(["profile", str(arch_path), "--json", str(json_path)]) == 0
    text = capsys.readouterr().out
    assert "layers.21" in text and "1x1x28x28" in text
    assert json.loads(json_path.read_text())["format"] == "hwnas.profile"
    assert cli.main(["profile", "fbnet_a", "--resolution", "96", "--summary"]) == 0


def test_cli_errors(capsys, tmp_path):
    assert cli.main(["profile", "no_such_model"]) == 1
    assert "neither a zoo model" in capsys.readouterr().err
    assert cli.main(["show", "fbnet_a", "--space-file", "space.json"]) == 1
    assert "--space-file is for architecture files" in capsys.readouterr().err
    assert cli.main(["show", str(tmp_path)]) == 1
    assert "without architecture.json" in capsys.readouterr().err
    assert cli.main(["show", "fbnet_a", "--figure", str(tmp_path)]) == 1
    assert "hwnas show: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["frobnicate"])


def test_subcommand_registry_is_extensible(capsys):
    cli.register_subcommand("echo_test", "test", lambda p: p.add_argument("word"), lambda a: print(a.word) or 0)
    try:
        assert cli.main(["echo_test", "hello"]) == 0
        assert capsys.readouterr().out.strip() == "hello"
    finally:
        del cli.SUBCOMMANDS["echo_test"]


def test_cli_names_bad_architecture_files(capsys, tmp_path):
    arch = get_space("fbnet_small", resolution=8, width=0.25).sample(seed=0)
    data = arch.to_dict()
    data["space_options"] = {"foo": 1}
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps(data))
    assert cli.main(["show", str(unknown)]) == 1
    assert f"{unknown}: search space 'fbnet_small' has no option 'foo'" in capsys.readouterr().err
    binary = tmp_path / "binary.json"
    binary.write_bytes(bytes(range(256)))
    assert cli.main(["show", str(binary)]) == 1
    assert f"{binary}: not a UTF-8 text file" in capsys.readouterr().err


def test_figure_format_follows_the_extension(tmp_path, capsys):
    assert cli.main(["show", "fbnet_a", "--figure", str(tmp_path / "f.txt")]) == 1
    assert "a figure is written as .png, .svg, .pdf, not .txt" in capsys.readouterr().err
    assert not (tmp_path / "f.txt").exists()
    assert cli.main(["show", "fbnet_a", "--figure", str(tmp_path / "f.svg")]) == 0
    assert (tmp_path / "f.svg").read_text().lstrip().startswith("<?xml")
    assert cli.main(["show", "fbnet_a", "--figure", str(tmp_path / "f.pdf")]) == 0
    assert (tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"


def test_profile_json_folder_is_refused_before_printing(tmp_path, capsys):
    assert cli.main(["profile", "fbnet_a", "--json", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "a folder; give a file name" in err and out == ""
