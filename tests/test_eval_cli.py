"""`musicllm eval`: every verb dispatches and has --help."""

import pytest

from eval.cli import VERBS, main


def test_usage_lists_the_verbs(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(verb in out for verb in VERBS)
    assert main(["nope"]) == 2


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_each_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    assert f"musicllm eval {verb}" in capsys.readouterr().out


def test_suite_names_what_is_missing(tmp_path, capsys):
    assert main(["suite", "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'model'}: no model there" in err and "musicllm quickstart" in err
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mc_test.csv").write_text("")
    assert main(["suite", "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no test manifest ({tmp_path / 'corpus' / 'manifest.jsonl'})" in err and "test questions" not in err
    assert "`musicllm quickstart` makes the held-out sets there" in err
