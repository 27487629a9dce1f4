"""`python -m wavetyp.export`: the shipped file (weights only) and a model card whose numbers
come from the run(s) and the evaluation results."""
import json

import torch
from conftest import tiny_config
from test_train import fast_options, synth_corpus

from wavetyp import export
from wavetyp.core.checkpoint import read_checkpoint
from wavetyp.training.loop import train


def fake_results(path):
    rows = [{"level": lv, "bits_per_sample": b, "samples": 100, "files": 2,
             "per_digit": {str(d): b + d / 100 for d in range(10)}}
            for lv, b in (("none", 4.5), ("label", 4.25), ("mel", 4.125), ("all", 4.0))]
    path.write_text(json.dumps(rows))
    return path


def test_export_two_rounds_writes_weights_and_a_card_adding_up_the_rounds(tmp_path):
    torch.set_num_threads(1)
    corpus = synth_corpus()
    r1 = train(tiny_config(), fast_options(tmp_path / "r1", max_steps=3), corpus)
    r2 = train(tiny_config(p_drop_mel=0.25), fast_options(tmp_path / "r2", max_steps=2, lr=1e-3), corpus,
               init_state=r1["model"].state_dict())
    assert r2["step"] == 2
    out, card = tmp_path / "ship.pt", tmp_path / "card.md"
    code = export.main([str(tmp_path / "r2"), "--out", str(out), "--card", str(card),
                        "--results", str(fake_results(tmp_path / "res.json")),
                        "--earlier", str(tmp_path / "r1")])
    assert code == 0
    shipped = read_checkpoint(out)
    assert "optimizer" not in shipped and shipped["config"] == read_checkpoint(tmp_path / "r2/last.pt")["config"]
    text = card.read_text()
    assert "round 1 (" in text and "round 2 (" in text and "in all: 5 steps" in text
    # each round says its own conditioning dropout (round 2 changed the mel rate)
    r1_line, r2_line = (next(ln for ln in text.splitlines() if ln.startswith(f"- round {i} ("))
                        for i in (1, 2))
    assert "dropout digit/speaker/mel 0.2/0.2/0.5" in r1_line
    assert "dropout digit/speaker/mel 0.2/0.2/0.25" in r2_line
    assert "| none (no conditioning) | 4.500 |" in text and "| all (labels + mel frames) | 4.000 |" in text
    assert "| 9 nine | 4.590 | 4.340 | 4.215 | 4.090 |" in text


def test_export_refuses_a_missing_earlier_run(tmp_path, capsys):
    corpus = synth_corpus()
    train(tiny_config(), fast_options(tmp_path / "r1", max_steps=2), corpus)
    code = export.main([str(tmp_path / "r1"), "--out", str(tmp_path / "s.pt"), "--card",
                        str(tmp_path / "c.md"), "--results", str(fake_results(tmp_path / "res.json")),
                        "--earlier", str(tmp_path / "nope")])
    assert code == 2 and "no last.pt there" in capsys.readouterr().err
    assert not (tmp_path / "s.pt").exists()        # checked before anything is written


def test_rewriting_the_card_keeps_the_recognizer_section():
    from wavetyp.report.model_card import with_kept_sections
    old = "# Model card\n\nold text\n\n## Recognizer (checkpoints/recognizer.pt)\n\n100 %\n"
    new = with_kept_sections("# Model card\n\nnew text\n", old)
    assert new == "# Model card\n\nnew text\n\n## Recognizer (checkpoints/recognizer.pt)\n\n100 %\n"
    assert with_kept_sections("# card\n", "") == "# card\n"
