"""A shared annotations file cannot make edgeopt read local files, fill the disk, or keep a non-image.

The server is real (loopback, ``http.server``); the hostile URLs are what an annotations file can hold.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from edgeopt.cli.app import app
from edgeopt.data.download import DownloadRefused, download_file
from edgeopt.data.taco import convert_taco

runner = CliRunner()


def _jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    buf = BytesIO()
    Image.new("RGB", size, (5, 100, 5)).save(buf, format="JPEG")
    return buf.getvalue()


class _Hostile(http.server.BaseHTTPRequestHandler):
    """/ok.jpg an image, /page.jpg HTML, /huge.jpg a large body, /liar.jpg a large body with no length,
    /to-file.jpg and /to-ftp.jpg redirects out of http."""

    secret = ""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path in ("/to-file.jpg", "/to-ftp.jpg"):
            self.send_response(302)
            self.send_header("Location", f"file://{self.secret}" if self.path == "/to-file.jpg" else "ftp://127.0.0.1/x.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = {"/ok.jpg": _jpeg(), "/page.jpg": b"<html>not an image</html>", "/huge.jpg": b"\xff" * 200_000,
                "/liar.jpg": b"\xff" * 200_000}.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        if self.path != "/liar.jpg":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    _Hostile.secret = str(tmp_path / "secret.txt")
    (tmp_path / "secret.txt").write_text("a local file that must not be copied")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize(("url", "reason"), [
    ("file://{secret}", "not an http(s) URL (file scheme)"),
    ("ftp://127.0.0.1/x.jpg", "not an http(s) URL (ftp scheme)"),
    ("data:image/jpeg;base64,AAAA", "not an http(s) URL (data scheme)"),
    ("{base}/to-file.jpg", "redirected to a URL that is not http(s)"),
    ("{base}/to-ftp.jpg", "redirected to a URL that is not http(s)"),
    ("{base}/page.jpg", "what arrived is not an image"),
    ("{base}/huge.jpg", "larger than 100000 bytes"),
    ("{base}/liar.jpg", "larger than 100000 bytes"),
])
def test_hostile_urls_are_refused_and_nothing_is_kept(server: str, tmp_path: Path, url: str, reason: str) -> None:
    dest = tmp_path / "imgs" / "a.jpg"
    with pytest.raises(DownloadRefused, match=reason.replace("(", r"\(").replace(")", r"\)")):
        download_file(url.format(base=server, secret=tmp_path / "secret.txt"), dest, retries=1, backoff=0.01,
                      timeout=5, max_bytes=100_000)
    assert not dest.exists() and not dest.with_name("a.jpg.part").exists()


def test_an_image_within_the_cap_is_kept(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "a.jpg"
    download_file(f"{server}/ok.jpg", dest, retries=0, timeout=5, max_bytes=100_000)
    assert dest.read_bytes() == _jpeg()


def test_data_taco_download_counts_refusals_as_skips(server: str, tmp_path: Path) -> None:
    """The reported case: a flickr_url of file:///... copied a local file and said 'downloaded 1 image(s)'."""
    images = [{"id": i, "file_name": f"batch_1/{i}.jpg", "width": 64, "height": 48, "flickr_url": url}
              for i, url in enumerate([f"file://{tmp_path / 'secret.txt'}", f"{server}/page.jpg", f"{server}/ok.jpg"])]
    anns = [{"id": i, "image_id": i, "category_id": 0, "bbox": [0, 0, 32, 24]} for i in range(3)]
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns,
                               "categories": [{"id": 0, "name": "Drink can", "supercategory": "Can"}]}))
    result = runner.invoke(app, ["data", "taco", "--annotations", str(ann), "--images", str(tmp_path / "imgs"),
                                 "--out", str(tmp_path / "out"), "--download", "--max-image-mb", "1"])
    assert result.exit_code == 0, result.output
    assert "downloaded 1 image(s)" in result.output
    assert "skipped 1: download refused: not an http(s) URL (file scheme)" in result.output
    assert "skipped 1: download refused: what arrived is not an image" in result.output
    kept = sorted(p.name for p in (tmp_path / "imgs").rglob("*") if p.is_file())
    assert kept == ["2.jpg"]
    summary = convert_taco(ann, tmp_path / "imgs", tmp_path / "out2", download=True)
    assert summary.counts["Metal"] == 1 and summary.downloaded == 0  # the third is on disk now; the others still refused
