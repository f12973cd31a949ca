"""What an upload may be: the allowed content types, how their bytes are recognised, and how a
client's filename is made safe to keep and to send back.

The declared type must be on the allow-list (415 otherwise, before a byte is read), and the
bytes must then look like that type: a signature at the start for binary formats, the parts
that make a zip an Office document for docx/xlsx, and valid UTF-8 without NUL for text. The
check runs on every chunk as it streams past (`ContentInspector.feed`), so a mismatch stops the
upload at once, and once more on the complete file (`finish`).
"""

from __future__ import annotations

import codecs
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

from common.exceptions import UnsupportedMediaTypeError

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ZIP_SIGNATURE = b"PK\x03\x04"
TEXT_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})

MAX_FILENAME_CHARS = 255  # documents.filename is VARCHAR(255)
MAX_EXTENSION_CHARS = 16
FALLBACK_FILENAME = "document"


@dataclass(frozen=True, slots=True)
class AllowedType:
    media_type: str
    signature: bytes = b""  # the bytes the file must start with
    text: bool = False  # valid UTF-8 without NUL
    zip_part: str | None = None  # an Office Open XML package must hold this part


ALLOWED_TYPES: dict[str, AllowedType] = {
    allowed.media_type: allowed
    for allowed in (
        AllowedType("application/pdf", signature=b"%PDF-"),
        AllowedType("image/png", signature=b"\x89PNG\r\n\x1a\n"),
        AllowedType("image/jpeg", signature=b"\xff\xd8\xff"),
        AllowedType(DOCX, signature=ZIP_SIGNATURE, zip_part="word/document.xml"),
        AllowedType(XLSX, signature=ZIP_SIGNATURE, zip_part="xl/workbook.xml"),
        AllowedType("text/plain", text=True),
        AllowedType("text/csv", text=True),
        AllowedType("application/json", text=True),
    )
}


def allowed_type(declared: str | None) -> AllowedType:
    """The allow-list entry for a declared `Content-Type` (parameters aside); 415 if none.

    Text types may name their charset, which must then be UTF-8 (or its subset ASCII): the
    bytes are checked as UTF-8 and served back as UTF-8.
    """
    media_type, _, parameters = (declared or "").partition(";")
    media_type = media_type.strip().lower()
    allowed = ALLOWED_TYPES.get(media_type)
    if allowed is None:
        shown = f"'{media_type}'" if media_type else "no content type"
        raise UnsupportedMediaTypeError(
            f"Files of type {shown} are not accepted; allowed: {', '.join(ALLOWED_TYPES)}."
        )
    if allowed.text:
        charset = _parameter(parameters, "charset")
        if charset is not None and charset.lower() not in TEXT_CHARSETS:
            raise UnsupportedMediaTypeError(
                f"Text files must be UTF-8; the declared charset is '{charset}'."
            )
    return allowed


def _parameter(parameters: str, name: str) -> str | None:
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return None


class ContentInspector:
    """Checks that the bytes are what the declared type says, chunk by chunk.

    Runs in the storage writer's thread (`FileStorage.store(inspect=...)`); raises 415.
    """

    def __init__(self, allowed: AllowedType) -> None:
        self.allowed = allowed
        self._head = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")() if allowed.text else None

    def feed(self, chunk: bytes) -> None:
        signature = self.allowed.signature
        if signature and len(self._head) < len(signature):
            self._head += chunk[: len(signature) - len(self._head)]
            if not signature.startswith(self._head):
                raise self._mismatch()
        if self._decoder is not None:
            if b"\x00" in chunk:
                raise self._mismatch("it contains NUL bytes")
            try:
                self._decoder.decode(chunk)
            except UnicodeDecodeError:
                raise self._mismatch("it is not valid UTF-8") from None

    def finish(self, path: Path) -> None:
        """The checks that need the whole file (sync: call it in a worker thread)."""
        if len(self._head) < len(self.allowed.signature):
            raise self._mismatch()
        if self._decoder is not None:
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise self._mismatch("it is not valid UTF-8") from None
        if self.allowed.zip_part is not None:
            try:
                with zipfile.ZipFile(path) as package:
                    names = set(package.namelist())
            except (zipfile.BadZipFile, OSError):
                raise self._mismatch("it is not a valid zip package") from None
            if "[Content_Types].xml" not in names or self.allowed.zip_part not in names:
                raise self._mismatch()

    def _mismatch(self, reason: str | None = None) -> UnsupportedMediaTypeError:
        why = f": {reason}" if reason else ""
        return UnsupportedMediaTypeError(
            f"The file's content does not match its declared type '{self.allowed.media_type}'{why}."
        )


_SEPARATORS = re.compile(r"[/\\]")
# Control (Cc), format (Cf: bidi overrides that disguise extensions, zero-width characters)
# and surrogate (Cs) code points: never kept in a filename.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def safe_filename(raw: str | None) -> str:
    """The client's filename made safe to store and to send back in Content-Disposition.

    Only the last path component is kept (both separators: clients on Windows send `\\`);
    control and format characters are dropped; whitespace runs become one space; leading and
    trailing dots and spaces go (no `..`, no hidden files); the length is capped at 255
    characters, keeping the extension. Nothing is left -> "document". The result is metadata
    only: the bytes are stored under a random key, never under this name.
    """
    name = unicodedata.normalize("NFC", raw or "")
    name = _SEPARATORS.split(name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    name = " ".join(name.split()).strip(" .")
    if not name:
        return FALLBACK_FILENAME
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        if dot and stem and len(extension) <= MAX_EXTENSION_CHARS:
            room = MAX_FILENAME_CHARS - len(extension) - 1
            name = f"{stem[:room].rstrip(' .')}.{extension}"
        else:
            name = name[:MAX_FILENAME_CHARS].rstrip(" .")
    return name
