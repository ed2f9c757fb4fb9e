"""The command line: every subcommand explains itself with --help (in-process, no Ray)."""

import dataclasses

import pytest

from pipeline.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: logitfuse")
    assert len(out.splitlines()) >= 4


def test_quickstart_and_bench_help_say_what_they_do_and_how_long(capsys):
    for command in ("quickstart", "bench"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert "minutes" in out and "LOGITFUSE_CACHE" in out and "accuracy.png" in out


def test_no_command_prints_the_overview(capsys):
    assert main([]) == 1
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_a_job_command_does_not_import_torch_transformers_or_ray_before_it_runs():
    """`logitfuse capture --help` (and so a config error) answers without the heavy imports: they load when the
    job runs, and no other command's module is imported on the way."""
    import subprocess
    import sys

    code = ("import sys\nfrom pipeline.cli import main\ntry:\n    main(['capture', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in ('torch', 'transformers', 'ray', 'polars', 'matplotlib', "
            "'pipeline.commands.validate', 'pipeline.commands.submit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_help_says_what_each_setting_does(capsys):
    from jobs._entry import field_comments

    from pipeline.capture.config import CaptureConfig

    with pytest.raises(SystemExit):
        main(["capture", "--help"])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("  prefetch_weights = True"))
    assert "page cache" in line  # the comment beside the field in the config class
    notes = field_comments(CaptureConfig)
    assert notes["k"].startswith("*output* top-k width") and "model" in notes and "input" in notes


@dataclasses.dataclass
class _Inner:
    depth: int = 2  # how deep


@dataclasses.dataclass
class _Tricky:
    """A docstring line that looks like a field:  # not a note"""

    color: str = "#fff"  # the colour
    url: str = "http://x/#frag"
    limit: str | None = None  # first line of a long note
    #                           that goes on here
    # a section comment, not a continuation
    inner: _Inner = dataclasses.field(default_factory=_Inner)

    def method(self):
        depth: int = 4  # a local, not the field's note
        return depth


def test_field_notes_come_from_the_class_body_only():
    from jobs._entry import field_comments, fields_help

    assert field_comments(_Tricky) == {"color": "the colour", "limit": "first line of a long note that goes on here"}
    text = fields_help(_Tricky)
    assert "  url = 'http://x/#frag'\n" in text and "frag\"" not in text.replace("'http://x/#frag'", "")
    assert "  inner.depth = 2" in text and "how deep" in text and "a local" not in text
