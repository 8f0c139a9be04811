"""Reading a user's files: one-line errors for a missing file, text that is not UTF-8, a CSV that cannot be read."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from innerlens.errors import ConfigError

if TYPE_CHECKING:  # pandas only for the annotation: options stay importable without it
    import pandas


def existing_file(path: str | Path, option: str) -> Path:
    """``path`` as a Path, or the one-line error every file option gives when it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{option}: no such file {str(path)!r}")
    return path


def read_input_text(path: str | Path, option: str) -> str:
    """A user's text file, decoded as UTF-8, or a one-line error saying where it is not UTF-8."""
    path = existing_file(path, option)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{option} {str(path)!r}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset "
                          f"{error.start}); save it as UTF-8") from None


def read_input_csv(path: str | Path, option: str) -> pandas.DataFrame:
    """A user's CSV (UTF-8, with a header row), or a one-line error."""
    import io

    import pandas

    text = read_input_text(path, option)
    if "\x00" in text:
        raise ConfigError(f"{option} {str(path)!r}: a binary file, not a CSV")
    try:
        return pandas.read_csv(io.StringIO(text))
    except pandas.errors.EmptyDataError:
        raise ConfigError(f"{option} {str(path)!r}: empty; expected a CSV with a header row") from None
    except pandas.errors.ParserError as error:
        raise ConfigError(f"{option} {str(path)!r}: not a readable CSV ({str(error).splitlines()[0]})") from None
