"""One error type users see: it names the file, line and field, and what to do."""

from __future__ import annotations


class SftevalError(Exception):
    """A user-facing error. The CLI prints `str(err)` and exits with `exit_code`."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.field = field
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.path:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            if self.field:
                where += f" (field '{self.field}')"
            where += ": "
        elif self.field:
            where = f"field '{self.field}': "
        text = where + self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text
