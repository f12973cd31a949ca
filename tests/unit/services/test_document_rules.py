"""The upload policy (types, content checks, filenames) and the documents API's HTTP details."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from api.documents import content_disposition, expected_version
from common.exceptions import BadRequestError, UnsupportedMediaTypeError
from common.upload_policy import (
    ALLOWED_TYPES,
    DOCX,
    XLSX,
    ContentInspector,
    allowed_type,
    safe_filename,
)

# --- declared types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "canonical"),
    [
        ("application/pdf", "application/pdf"),
        ("IMAGE/PNG", "image/png"),
        (" image/jpeg ", "image/jpeg"),
        (DOCX, DOCX),
        (XLSX, XLSX),
        ("text/plain; charset=utf-8", "text/plain"),
        ('text/csv; charset="UTF-8"', "text/csv"),
        ("application/json; charset=us-ascii", "application/json"),
        ("application/pdf; name=whatever", "application/pdf"),
    ],
)
def test_allowed_types(declared: str, canonical: str) -> None:
    assert allowed_type(declared).media_type == canonical


@pytest.mark.parametrize(
    "declared",
    [None, "", "text/html", "image/svg+xml", "application/octet-stream", "application/pdfx"],
)
def test_other_types_are_refused_naming_the_allowed_ones(declared: str | None) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as refused:
        allowed_type(declared)
    assert all(media_type in refused.value.detail for media_type in ALLOWED_TYPES)


@pytest.mark.parametrize("charset", ["iso-8859-1", "utf-16", "windows-1252"])
def test_text_must_be_utf8(charset: str) -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="UTF-8"):
        allowed_type(f"text/plain; charset={charset}")


# --- content checks ----------------------------------------------------------------------------


def inspect(media_type: str, *chunks: bytes, path: Path | None = None) -> None:
    inspector = ContentInspector(ALLOWED_TYPES[media_type])
    for chunk in chunks:
        inspector.feed(chunk)
    inspector.finish(path or Path("/nonexistent"))


def test_a_signature_split_across_chunks_is_recognised() -> None:
    inspect("image/png", b"\x89P", b"NG\r", b"\n\x1a\n rest of the image")
    inspect("application/pdf", b"%", b"P", b"D", b"F", b"-1.7")


def test_a_wrong_signature_is_refused_at_the_first_chunk() -> None:
    inspector = ContentInspector(ALLOWED_TYPES["application/pdf"])
    with pytest.raises(UnsupportedMediaTypeError, match="does not match"):
        inspector.feed(b"\x89PNG")


def test_a_file_shorter_than_its_signature_is_refused() -> None:
    with pytest.raises(UnsupportedMediaTypeError):
        inspect("image/jpeg", b"\xff\xd8")


def test_utf8_split_across_chunks_is_fine() -> None:
    euro = "€".encode()
    inspect("text/plain", b"price: " + euro[:1], euro[1:2], euro[2:] + b" 10")


@pytest.mark.parametrize(
    "chunks",
    [
        (b"fine", b"then a \x00"),
        (b"latin-1 caf\xe9",),
        (b"ends mid-character " + "€".encode()[:2],),
        ("\ufeff{}".encode("utf-16-le"),),
    ],
)
def test_text_must_be_utf8_without_nul(chunks: tuple[bytes, ...]) -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="does not match"):
        inspect("text/plain", *chunks)


def test_office_packages_are_told_apart(tmp_path: Path) -> None:
    def package(path: Path, *parts: str) -> Path:
        with zipfile.ZipFile(path, "w") as archive:
            for part in parts:
                archive.writestr(part, "<x/>")
        return path

    docx = package(tmp_path / "a.docx", "[Content_Types].xml", "word/document.xml")
    xlsx = package(tmp_path / "a.xlsx", "[Content_Types].xml", "xl/workbook.xml")
    bare = package(tmp_path / "a.zip", "word/document.xml")
    inspect(DOCX, docx.read_bytes(), path=docx)
    inspect(XLSX, xlsx.read_bytes(), path=xlsx)
    for media_type, path in ((DOCX, xlsx), (XLSX, docx), (DOCX, bare)):
        with pytest.raises(UnsupportedMediaTypeError):
            inspect(media_type, path.read_bytes(), path=path)
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"PK\x03\x04 and then nothing of a zip")
    with pytest.raises(UnsupportedMediaTypeError, match="zip"):
        inspect(DOCX, broken.read_bytes(), path=broken)


# --- filenames ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        (None, "document"),
        ("", "document"),
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ana\\report.pdf", "report.pdf"),
        ("dir/", "document"),
        ("..", "document"),
        ("...hidden", "hidden"),
        ("trailing dots...", "trailing dots"),
        ("a\x00b\nc\r\td.txt", "abcd.txt"),
        ("\x1b[2Jclear.txt", "[2Jclear.txt"),
        ("cv\u202efdp.exe", "cvfdp.exe"),
        ("x\ufeffy\u200dz.txt", "xyz.txt"),
        ("  lots   of\u00a0space  .txt", "lots of space .txt"),
        ("e\u0301te\u0301.txt", "été.txt"),
        ("日本語の資料.pdf", "日本語の資料.pdf"),
    ],
)
def test_safe_filename(raw: str | None, safe: str) -> None:
    assert safe_filename(raw) == safe


def test_long_filenames_keep_their_extension() -> None:
    name = safe_filename("x" * 400 + ".xlsx")
    assert len(name) == 255
    assert name.endswith("x.xlsx")
    no_extension = safe_filename("y" * 400)
    assert no_extension == "y" * 255
    odd_extension = safe_filename("z" * 300 + "." + "e" * 40)
    assert len(odd_extension) == 255  # an "extension" that long is just part of the name


# --- HTTP details ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "header"),
    [
        ("report.pdf", "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"),
        (
            'a "quoted" \\ 100%.txt',
            'attachment; filename="a _quoted_ _ 100_.txt"; '
            "filename*=UTF-8''a%20%22quoted%22%20%5C%20100%25.txt",
        ),
        (
            "Résumé.pdf",
            "attachment; filename=\"Resume.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9.pdf",
        ),
        (
            "資料.pdf",
            "attachment; filename=\"document.pdf\"; filename*=UTF-8''%E8%B3%87%E6%96%99.pdf",
        ),
        ("a;b=c,d.txt", "attachment; filename=\"a;b=c,d.txt\"; filename*=UTF-8''a%3Bb%3Dc%2Cd.txt"),
    ],
)
def test_content_disposition(filename: str, header: str) -> None:
    assert content_disposition(filename) == header
    header.encode("latin-1")  # header values must be Latin-1: this one is plain ASCII


@pytest.mark.parametrize(
    ("if_match", "body", "expected"),
    [
        (None, None, None),
        (None, 4, 4),
        ('"4"', None, 4),
        (' "4" ', 4, 4),
    ],
)
def test_expected_version(if_match: str | None, body: int | None, expected: int | None) -> None:
    assert expected_version(if_match, body) == expected


@pytest.mark.parametrize(
    ("if_match", "body"),
    [('W/"4"', None), ("4", None), ("*", None), ('"4", "5"', None), ('"x"', None), ('"4"', 5)],
)
def test_expected_version_refuses(if_match: str, body: int | None) -> None:
    with pytest.raises(BadRequestError):
        expected_version(if_match, body)
