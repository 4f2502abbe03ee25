"""Running the real ``modsab`` entry point from a test, as a user's shell would."""

from __future__ import annotations

from modsab.cli import main


def modsab(capsys, *args) -> tuple[int, str, str]:
    """Run the real entry point (InputError -> exit 2); returns (exit code, stdout, stderr)."""
    try:
        main(list(map(str, args)))
        code = 0
    except SystemExit as done:
        code = done.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err
