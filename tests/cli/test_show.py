"""`rwenas show`: decoding, complexity, drawing, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

from rwenas.cli import main
from rwenas.errors import ConfigError
from rwenas.models import create_network
from rwenas.report import drawing
from rwenas.report.drawing import genotype_dot, macro_dot, micro_dot, render_dot
from rwenas.spaces import MacroSpace, MicroSpace, format_genome
from rwenas.spaces.published import _NSGANET_MACRO, MACRO_ARCHS, published

HAND_GENOME = (3, 0, 4, 1, 2, 2, 0, 0, 1, 1, 5, 2, 8, 3, 7, 0, 6, 5, 2, 1) + (0, 0, 1, 1) * 5
HAND_TEXT = format_genome(HAND_GENOME)
TINY = ["--channels", "4", "--layers", "3"]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in-process: exit code (argparse exits count too), stdout, stderr."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(argv: list[str], capsys, *fragments: str) -> str:
    rc, out, err = run(argv, capsys)
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rwenas: error:")
    assert "Traceback" not in err and "Traceback" not in out
    assert out == ""
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# -- successful runs -------------------------------------------------------------------------------
def test_darts_at_the_cifar_setting_json(capsys):
    rc, out, err = run(["show", "--space", "micro", "--arch", "DARTS", "--channels", "36",
                        "--layers", "20", "--auxiliary", "--json"], capsys)
    assert rc == 0 and err == ""
    data = json.loads(out)
    assert data["params_m"] == pytest.approx(3.35, abs=0.01)
    assert 450 < data["madds_m"] < 600
    assert data["space"] == "micro" and data["label"] == "DARTS"
    assert data["genotype"] == published("micro", "DARTS").to_dict()
    assert data["genome"] is None and data["key"] is None  # 4 blocks: no B=5 micro genome
    assert data["dataset"] == "cifar10" and data["setting"] == "search"


def test_genome_text_output(capsys):
    rc, out, err = run(["show", "--genome", HAND_TEXT, *TINY], capsys)
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "normal cell:"
    assert "  node 2 = sep_conv_3x3(node 0) + sep_conv_5x5(node 1)" in lines
    assert "  output = concat(nodes 4, 6)" in lines
    assert f"genome: {HAND_TEXT}" in lines
    assert "dataset: cifar10 (3x32x32), setting: search" in lines
    assert lines[-1].startswith("params: ") and "multiply-adds:" in lines[-1]


@pytest.mark.parametrize("form", ["commas", "brackets"])
def test_genome_in_other_forms(capsys, form):
    text = ",".join(map(str, HAND_GENOME)) if form == "commas" else str(list(HAND_GENOME))
    rc, out, _ = run(["show", "--genome", text, *TINY, "--json"], capsys)
    assert rc == 0
    data = json.loads(out)
    assert data["genome"] == list(HAND_GENOME)
    assert data["key"] == MicroSpace().key(HAND_GENOME)


def test_genome_json_on_fashion_mnist(capsys):
    rc, out, _ = run(["show", "--genome", HAND_TEXT, *TINY, "--dataset", "fashion-mnist",
                      "--json"], capsys)
    assert rc == 0
    data = json.loads(out)
    assert data["dataset"] == "fashion-mnist"
    net = create_network(MicroSpace(), HAND_GENOME, channels=4, layers=3, in_channels=1)
    assert data["params_m"] == pytest.approx(sum(p.numel() for p in net.parameters()) / 1e6)


def test_macro_nsganet(capsys):
    rc, out, err = run(["show", "--space", "macro", "--arch", "NSGANet"], capsys)
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[:3] == ["phase 0:", "  node 1 <- input", "  node 2 <- node 1"]
    assert f"genome: {format_genome(MACRO_ARCHS['NSGANet'].bits())}" in lines
    rc, out, _ = run(["show", "--space", "macro", "--arch", "nsga-net", "--channels", "4,6,8",
                      "--json"], capsys)
    assert rc == 0
    data = json.loads(out)
    assert data["genotype"] == _NSGANET_MACRO
    assert data["genome"] == list(MACRO_ARCHS["NSGANet"].bits())
    assert data["key"] == MacroSpace().key(MACRO_ARCHS["NSGANet"].bits())
    assert data["params_m"] > 0


def test_json_output_reads_back_as_a_genotype_file(tmp_path, capsys):
    rc, out, _ = run(["show", "--arch", "NSGANet", *TINY, "--json"], capsys)
    assert rc == 0
    first = json.loads(out)
    path = tmp_path / "nsganet.json"
    path.write_text(out)
    rc, out, _ = run(["show", "--genotype", str(path), *TINY, "--json"], capsys)
    assert rc == 0
    second = json.loads(out)
    for field in ("genotype", "genome", "key", "params_m", "madds_m"):
        assert second[field] == first[field], field
    # a bare genotype object works too
    path.write_text(json.dumps(first["genotype"]))
    rc, out, _ = run(["show", "--genotype", str(path), *TINY, "--json"], capsys)
    assert rc == 0 and json.loads(out)["genotype"] == first["genotype"]


def test_macro_nsganet_validation_setting_is_nsganets_dense_network(capsys):
    """NSGA-Net trains its macro genome with the dense decoder: 3.37 M params, 1290 M MAdds."""
    rc, out, _ = run(["show", "--space", "macro", "--arch", "NSGANet", "--setting",
                      "validation", "--json"], capsys)
    assert rc == 0
    data = json.loads(out)
    assert data["params_m"] == pytest.approx(3.37, rel=0.02)
    assert data["madds_m"] == pytest.approx(1290, rel=0.02)
    rc, out, _ = run(["show", "--space", "macro", "--arch", "NSGANet", "--setting",
                      "validation", "--decoder", "residual", "--json"], capsys)
    assert json.loads(out)["madds_m"] == pytest.approx(1162.49, abs=0.01)
    rc, out, _ = run(["show", "--space", "macro", "--arch", "NSGANet", "--pad-first",
                      "--json"], capsys)
    assert json.loads(out)["madds_m"] == pytest.approx(193.82, abs=0.01)


def test_macro_genotype_file_as_bit_string(tmp_path, capsys):
    bits = "".join(map(str, MACRO_ARCHS["NSGANet"].bits()))
    path = tmp_path / "macro.json"
    path.write_text(json.dumps(bits))
    rc, out, _ = run(["show", "--space", "macro", "--genotype", str(path), "--channels", "4",
                      "--json"], capsys)
    assert rc == 0
    assert json.loads(out)["genotype"] == _NSGANET_MACRO


# -- drawing ---------------------------------------------------------------------------------------
def test_draw_dot(tmp_path, capsys):
    target = tmp_path / "out.dot"
    rc, out, _ = run(["show", "--arch", "DARTS", *TINY, "--draw", str(target)], capsys)
    assert rc == 0
    text = target.read_text()
    assert text.startswith("digraph cells {") and text.rstrip().endswith("}")
    assert "dil_conv_3x3" in text and 'label="DARTS"' in text
    assert f"drawing: {target}" in out.splitlines()
    assert "Graphviz" not in out


def test_draw_macro_dot(tmp_path, capsys):
    target = tmp_path / "sub" / "macro.dot"  # missing folders are created
    rc, _, _ = run(["show", "--space", "macro", "--arch", "NSGANet", "--channels", "4",
                    "--draw", str(target)], capsys)
    assert rc == 0
    text = target.read_text()
    assert "digraph phases" in text and "conv3x3" in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")
def test_draw_svg_with_graphviz(tmp_path, capsys):
    target = tmp_path / "out.svg"
    rc, out, _ = run(["show", "--arch", "DARTS", *TINY, "--draw", str(target), "--json"],
                     capsys)
    assert rc == 0
    assert json.loads(out)["drawing"] == str(target)
    assert "<svg" in target.read_text()
    assert not target.with_suffix(".dot").exists()


def test_draw_svg_without_graphviz_writes_dot(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(drawing.shutil, "which", lambda name: None)
    target = tmp_path / "out.svg"
    rc, out, _ = run(["show", "--arch", "DARTS", *TINY, "--draw", str(target)], capsys)
    assert rc == 0
    fallback = tmp_path / "out.dot"
    assert not target.exists()
    assert "digraph" in fallback.read_text()
    assert f"drawing: {fallback} (Graphviz not installed: wrote DOT text)" in out.splitlines()


def test_draw_gv_has_no_graphviz_note(tmp_path, capsys):
    target = tmp_path / "out.gv"
    rc, out, _ = run(["show", "--arch", "DARTS", *TINY, "--draw", str(target)], capsys)
    assert rc == 0 and "digraph" in target.read_text()
    assert f"drawing: {target}" in out.splitlines()


def test_draw_bad_suffix_is_a_user_error(tmp_path, capsys):
    assert_user_error(["show", "--arch", "DARTS", *TINY, "--draw", str(tmp_path / "x.txt")],
                      capsys, "--draw needs a .svg")


def test_dot_text_functions():
    darts = published("micro", "DARTS")
    text = micro_dot(darts, "t")
    assert text.count(" -> normal_n") == 8 and text.count(" -> reduce_n") == 8
    assert text.count("-> normal_out") == 4  # concat of 4 nodes
    assert genotype_dot(darts) == micro_dot(darts)
    space = MacroSpace(n_phases=2, n_nodes=3)
    gt = space.decode((1, 0, 0, 1, 0, 0, 0, 0))
    text = macro_dot(gt)
    assert genotype_dot(gt) == text
    assert "removed (no connections)" in text
    # phase 0: input->1, 1->2, 2->output, input->output
    assert text.count("p0_n") >= 4 and "p0_n0 -> p0_n4" in text and "p0_n2 -> p0_n4" in text
    with pytest.raises(ConfigError, match="no drawing"):
        genotype_dot(object())


def test_render_dot_writes_plain_dot(tmp_path):
    path = render_dot("digraph g { a -> b; }\n", tmp_path / "g.gv")
    assert path == tmp_path / "g.gv" and path.read_text().startswith("digraph")
    with pytest.raises(ConfigError, match=r"needs a \.svg"):
        render_dot("digraph g {}", tmp_path / "g.jpg")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")
def test_render_dot_reports_graphviz_failures(tmp_path):
    with pytest.raises(ConfigError, match="Graphviz failed"):
        render_dot("this is not dot", tmp_path / "bad.svg")


# -- user errors: exit 2, one line, no traceback ---------------------------------------------------
def test_malformed_genome(capsys):
    assert_user_error(["show", "--genome", "3 0 x 1"], capsys, "'x' is not an integer")


def test_wrong_genome_length(capsys):
    assert_user_error(["show", "--genome", "3 0 4 1"], capsys,
                      "micro genome must have 40 integers, got 4")


def test_out_of_range_genome(capsys):
    bad = list(HAND_GENOME)
    bad[1] = 5
    assert_user_error(["show", "--genome", format_genome(bad)], capsys,
                      "position 1: value 5 is outside its range [0, 1]")


def test_nb301_duplicate_inputs(capsys):
    assert_user_error(["show", "--space", "nb301", "--genome", " ".join(["0"] * 32)], capsys,
                      "uses input 0 twice")


def test_unknown_arch(capsys):
    assert_user_error(["show", "--arch", "ResNet"], capsys,
                      "unknown micro architecture 'ResNet'", "DARTS")


def test_missing_genotype_file(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    assert_user_error(["show", "--genotype", str(missing)], capsys,
                      f"genotype file not found: {missing}")


def test_invalid_json_file(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    assert_user_error(["show", "--genotype", str(path)], capsys, "is not valid JSON (line 1")


def test_genotype_with_missing_fields(tmp_path, capsys):
    path = tmp_path / "g.json"
    data = published("micro", "DARTS").to_dict()
    del data["reduce"], data["normal_concat"]
    path.write_text(json.dumps(data))
    assert_user_error(["show", "--genotype", str(path)], capsys,
                      "missing field(s): normal_concat, reduce")


def test_genotype_with_unknown_op(tmp_path, capsys):
    path = tmp_path / "g.json"
    data = published("micro", "DARTS").to_dict()
    data["normal"][2] = ["conv_9x9", 0]
    path.write_text(json.dumps(data))
    assert_user_error(["show", "--genotype", str(path)], capsys,
                      "unknown operation 'conv_9x9'")


def test_macro_genotype_with_bad_digits(tmp_path, capsys):
    path = tmp_path / "g.json"
    path.write_text(json.dumps("\u00b2" * 48))
    assert_user_error(["show", "--space", "macro", "--genotype", str(path)], capsys,
                      "not an integer")


@pytest.mark.parametrize("option", [["--layers", "3"], ["--auxiliary"], ["--se"],
                                    ["--increment", "2"]])
def test_macro_rejects_micro_options(capsys, option):
    name = option[0]
    assert_user_error(["show", "--space", "macro", "--arch", "NSGANet", *option], capsys,
                      f"{name} does not apply to the macro space")


@pytest.mark.parametrize("option", [["--decoder", "dense"], ["--pad-first"]])
def test_micro_rejects_macro_options(capsys, option):
    assert_user_error(["show", "--arch", "DARTS", *option], capsys,
                      f"{option[0]} does not apply to the micro space")


def test_macro_wrong_number_of_widths(capsys):
    assert_user_error(["show", "--space", "macro", "--arch", "NSGANet", "--channels", "4,4"],
                      capsys, "need 3 channel widths")


def test_unknown_space(capsys):
    assert_user_error(["show", "--space", "resnet", "--arch", "DARTS"], capsys,
                      "unknown search space 'resnet'")


def test_published_arch_outside_nb301(capsys):
    assert_user_error(["show", "--space", "nb301", "--arch", "NASNet"], capsys,
                      "NASNet is not in the nb301 space")


def test_darts_is_in_nb301(capsys):
    rc, out, _ = run(["show", "--space", "nb301", "--arch", "DARTS", "--json", *TINY], capsys)
    assert rc == 0
    shown = json.loads(out)
    from rwenas.spaces import get_space

    space = get_space("nb301")
    darts = published("micro", "DARTS")
    decoded = space.decode(space.validate(shown["genome"]))
    # the nb301 genome is DARTS itself: same operations on the same inputs, in both cells
    assert [tuple(e) for e in decoded.normal] == [tuple(e) for e in darts.normal]
    assert [tuple(e) for e in decoded.reduce] == [tuple(e) for e in darts.reduce]
    assert shown["genotype"]["normal"] == [list(e) for e in darts.normal]
    assert shown["key"] == space.key(shown["genome"])
    assert shown["label"] == "DARTS" and shown["space"] == "nb301"


def test_argparse_errors_exit_2_on_one_line(capsys):
    for argv in (["show"], ["show", "--arch", "DARTS", "--channels", "0"],
                 ["show", "--arch", "DARTS", "--dataset", "mnist"], ["bogus"]):
        rc, out, err = run(argv, capsys)
        assert rc == 2 and out == ""
        assert len(err.splitlines()) == 1 and err.startswith("rwenas: error:")
        assert "Traceback" not in err


# -- the installed console script ------------------------------------------------------------------
def test_console_script_entry_point(tmp_path):
    scripts = [ep for ep in entry_points(group="console_scripts") if ep.name == "rwenas"]
    assert scripts and scripts[0].value == "rwenas.cli:main"
    exe = shutil.which("rwenas") or str(Path(sys.executable).with_name("rwenas"))
    if not Path(exe).exists():
        pytest.skip("the rwenas console script is not installed")
    genome = format_genome(MicroSpace().sample(np.random.default_rng(0)))
    result = subprocess.run([exe, "show", "--genome", genome, *TINY, "--json"],
                            capture_output=True, text=True, timeout=120, check=False,
                            cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["genome"] == [int(v) for v in genome.split()]
    assert data["key"] == MicroSpace().key(data["genome"])
