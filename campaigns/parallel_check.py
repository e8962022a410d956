"""A large batch checked in a process of its own while the importing process writes.

Checking a row is Python work (phones, ID numbers, amounts, dates: some 50 µs a row);
writing it is the database's (indexes, foreign keys) and the driver's. One after the other
they add up; side by side, on two cores, the import takes about as long as the longer of
the two. `checked_beside` starts ``python -m campaigns.parallel_check`` on the file: it runs
`batch_file.check_rows` and sends each FileHead and CheckedRows down a pipe (marshal, the
same plain values the rows are made of), and the importing process reads them as they come,
as it would read `check_rows` itself. The pipe holds a few chunks (a megabyte): the checker
runs that far ahead of the writer and then waits, so memory stays that of a few chunks.

The checker knows nothing of the database and is given nothing secret: the file's path and
name, the mapping, the encoding and the day, and of the environment only what runs Python. If it dies (killed, out of memory), the import
stops with `BatchImportError` and its transaction writes nothing.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import marshal
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from .batch_file import BatchImportError, CheckedRows, FileHead, Problem, check_rows, collector_paused

#: The pipe's size, where Linux lets it be set (F_SETPIPE_SZ; at most /proc/sys/fs/pipe-max-size,
#: a megabyte by default): the checker may be this far ahead of the writer.
PIPE_BYTES = 1 << 20
F_SETPIPE_SZ = 1031
#: What the package's parent directory is, for the checker to import it from.
ROOT = Path(__file__).resolve().parent.parent
END = ("end",)
#: What the checker is given of the environment: enough to run Python and read files, nothing
#: secret (the database's URL, the AMI secret).
ENVIRONMENT = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TMPDIR", "PYTHONPATH",
                         "VIRTUAL_ENV"})


# --- the wire: plain values, for marshal -------------------------------------------------------

def _problems(problems: list[Problem]) -> list[tuple]:
    return [(p.file, p.row, p.column, p.value, p.message) for p in problems]


def to_wire(message: FileHead | CheckedRows) -> tuple:
    if isinstance(message, FileHead):
        return ("head", message.file, message.encoding, message.rows, _problems(message.problems),
                message.reference_column)
    return ("rows", message.checked, message.cases, _problems(message.problems), message.firsts, message.repeated)


def from_wire(wire: tuple) -> FileHead | CheckedRows:
    kind, *values = wire
    if kind == "head":
        file, encoding, rows, problems, reference_column = values
        return FileHead(file, encoding, rows, [Problem(*p) for p in problems], reference_column)
    checked, cases, problems, firsts, repeated = values
    return CheckedRows(checked, cases, [Problem(*p) for p in problems], firsts, repeated)


# --- the importing process's side ----------------------------------------------------------------

@contextlib.contextmanager
def checked_beside(path: Path, file: str, *, today: dt.date, mapping: Mapping[str, str] | None = None,
                   encoding: str | None = None) -> Iterator[Iterator[FileHead | CheckedRows]]:
    """`check_rows` of the file, run by a process of its own: its messages as they come. The
    process is ended when the block is left, whether or not they were all read."""
    order = json.dumps({"path": str(path.resolve()), "file": file, "today": today.isoformat(),
                        "mapping": dict(mapping or {}), "encoding": encoding})
    environment = {name: value for name, value in os.environ.items() if name in ENVIRONMENT}
    if (ROOT / "pyproject.toml").exists():      # a checkout, perhaps not installed: the package from it
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    with tempfile.TemporaryFile() as errors:
        checker = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=errors, env=environment, cwd=ROOT)
        try:
            with contextlib.suppress(OSError):      # not Linux, or a lower limit: a smaller pipe will do
                fcntl.fcntl(checker.stdout.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
            checker.stdin.write(order.encode())
            checker.stdin.close()
            yield _messages(checker, errors)
        finally:
            if checker.poll() is None:
                checker.kill()
            checker.wait()
            checker.stdout.close()


def _messages(checker: subprocess.Popen, errors) -> Iterator[FileHead | CheckedRows]:
    pipe = checker.stdout
    while len(size := pipe.read(8)) == 8:
        blob = pipe.read(length := int.from_bytes(size, "little"))
        if len(blob) != length:     # cut short: the checker died while writing it
            break
        wire = marshal.loads(blob)
        if wire == END:
            return
        yield from_wire(wire)
    checker.wait()
    errors.seek(0)
    said = [line for line in errors.read().decode(errors="replace").splitlines() if line.strip()]
    why = f": {said[-1].strip()}" if said else ""
    raise BatchImportError(f"checking the file stopped (the checking process ended with exit status "
                           f"{checker.returncode}{why}); nothing was written")


# --- the checker's side --------------------------------------------------------------------------

def main() -> None:
    """Check the file the order on standard input names; each message to standard output,
    framed by its length (8 bytes, little-endian), then END."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C is the importing process's to handle: it ends this one
    order = json.loads(sys.stdin.read())
    out = sys.stdout.buffer

    def send(wire: tuple) -> None:
        blob = marshal.dumps(wire)
        out.write(len(blob).to_bytes(8, "little"))
        out.write(blob)
    try:
        with collector_paused():
            for message in check_rows(Path(order["path"]), order["file"], today=dt.date.fromisoformat(order["today"]),
                                      mapping=order["mapping"], encoding=order["encoding"]):
                send(to_wire(message))
            send(END)
            out.flush()
    except BrokenPipeError:     # the importing process stopped reading: it has stopped
        os._exit(1)


if __name__ == "__main__":
    main()
