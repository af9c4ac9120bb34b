"""Fetching images named by a dataset file (TACO's ``flickr_url``s), which is something people share.

Only ``http``/``https`` URLs are opened, by an opener that has no other handler (no ``file://``,
``ftp://`` or ``data:``, not even through a redirect); a response larger than the cap is cut off;
a file is kept only when it decodes as an image. Partial downloads resume (HTTP Range) and the
file appears under its name only when complete and checked.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from PIL import Image

from edgeopt.errors import DataError

SCHEMES = ("http", "https")
MAX_IMAGE_BYTES = 64 * 1024 * 1024  # TACO's largest originals are about 10 MB


class DownloadRefused(DataError):
    """A URL or response that is not kept whatever the retries (``reason`` is the skip it counts as)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"download of {url} refused: {reason}")
        self.reason = reason


def _http_opener() -> urllib.request.OpenerDirector:
    """``urlopen`` without its file, ftp and data handlers: a redirect elsewhere is an unknown URL type."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), urllib.request.HTTPHandler(),
                    urllib.request.HTTPSHandler(), urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPRedirectHandler(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def check_url(url: str) -> None:
    """Refuse any URL that is not http(s)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise DownloadRefused(url, f"not an http(s) URL ({scheme or 'no'} scheme)")


def _check_image(path: Path, url: str) -> None:
    try:
        with Image.open(path) as im:
            im.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        path.unlink(missing_ok=True)
        raise DownloadRefused(url, "what arrived is not an image") from None


def download_file(url: str, dest: Path, retries: int = 3, timeout: float = 30.0, backoff: float = 0.5,
                  max_bytes: int = MAX_IMAGE_BYTES) -> None:
    """Fetch the image at ``url`` into ``dest`` with retries; resumes a partial ``dest.part`` with a Range request.

    ``dest`` appears only once complete and decoded as an image (rename from the ``.part`` file);
    ``DownloadRefused`` (not retried) for a non-http(s) URL, a response over ``max_bytes`` or one
    that is not an image, ``DataError`` when the retries are spent.
    """
    check_url(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    opener = _http_opener()
    last_error: Exception | None = None
    attempts = 0
    for attempt in range(retries + 1):
        attempts += 1
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "edgeopt"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            with opener.open(request, timeout=timeout) as response:
                status = getattr(response, "status", 200)
                mode = "ab" if have and status == 206 else "wb"
                start = have if mode == "ab" else 0
                expected = response.headers.get("Content-Length")
                if expected is not None and start + int(expected) > max_bytes:
                    part.unlink(missing_ok=True)
                    raise DownloadRefused(url, f"larger than {max_bytes} bytes")
                written = 0
                with open(part, mode) as handle:
                    while block := response.read(1 << 16):
                        written += len(block)
                        if start + written > max_bytes:
                            handle.close()
                            part.unlink(missing_ok=True)
                            raise DownloadRefused(url, f"larger than {max_bytes} bytes")
                        handle.write(block)
                if expected is not None and written < int(expected):
                    raise urllib.error.URLError(f"short read: {written} of {expected} bytes")
            _check_image(part, url)
            part.replace(dest)
            return
        except urllib.error.HTTPError as exc:
            last_error = exc
            if exc.code == 416 and part.exists():  # range past the end: the part file is complete
                _check_image(part, url)
                part.replace(dest)
                return
            if 300 <= exc.code < 400:  # urllib refuses a redirect to file:// and friends this way
                raise DownloadRefused(url, "redirected to a URL that is not http(s)") from None
            if 400 <= exc.code < 500 and exc.code != 429:
                break
        except urllib.error.URLError as exc:
            if "unknown url type" in str(exc.reason):  # a redirect to file://, ftp://, ...
                raise DownloadRefused(url, "redirected to a URL that is not http(s)") from None
            last_error = exc
        except (OSError, TimeoutError) as exc:
            last_error = exc
        if attempt < retries:
            time.sleep(backoff * (2**attempt))
    raise DataError(f"download of {url} failed after {attempts} attempt(s): {last_error}")
