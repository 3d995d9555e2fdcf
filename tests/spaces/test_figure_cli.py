import json

import pytest

from hwnas import cli, models
from hwnas.spaces import get_space
from hwnas.spaces.figure import draw_architecture

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_draw_architecture_writes_png(tmp_path):
    out = tmp_path / "figs" / "a.png"
    space = get_space("fbnet", head_channels=1504)
    draw_architecture((space, models.architecture("fbnet_a")), out)
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    draw_architecture(get_space("hurricane").sample(seed=0), tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes().startswith(PNG_MAGIC)


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
