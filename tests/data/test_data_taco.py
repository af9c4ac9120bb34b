from __future__ import annotations

import http.server
import json
import os
import threading
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import TACO_ANNOTATIONS, needs_taco
from PIL import Image

from edgeopt.data.download import download_file
from edgeopt.data.folder import scan_folder
from edgeopt.data.taco import (
    convert_taco,
    load_class_map,
    safe_image_path,
)
from edgeopt.errors import ConfigError, DataError


def _coco(tmp_path: Path, images: list[dict], anns: list[dict], cats: list[dict] | None = None) -> Path:
    cats = cats or [
        {"id": 0, "name": "Drink can", "supercategory": "Can"},
        {"id": 1, "name": "Cigarette", "supercategory": "Cigarette"},
        {"id": 2, "name": "Paper cup", "supercategory": "Cup"},
    ]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def _ann(i: int, image_id: int, cat: int, bbox: list[float]) -> dict:
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox}


def test_crops_padding_clipping_and_skips(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    (imgs / "b").mkdir(parents=True)
    Image.new("RGB", (100, 80), (1, 2, 3)).save(imgs / "b" / "x.jpg")
    ann = _coco(
        tmp_path,
        [{"id": 5, "file_name": "b/x.jpg", "width": 100, "height": 80}],
        [
            _ann(1, 5, 0, [10, 10, 20, 30]),  # Metal
            _ann(2, 5, 0, [90, 70, 40, 40]),  # clipped to the image: 10 x 10
            _ann(3, 5, 0, [10, 10, 0, 5]),  # zero area
            _ann(4, 5, 0, [0, 0, 3, 3]),  # too small
            _ann(5, 5, 1, [0, 0, 50, 50]),  # Cigarette: dropped
            _ann(6, 5, 2, [20, 20, 30, 30]),  # Paper cup -> Paperpack
        ],
    )
    summary = convert_taco(ann, imgs, tmp_path / "out", "taco6", padding=0.1, min_size=5)
    assert summary.counts["Metal"] == 2 and summary.counts["Paperpack"] == 1
    assert summary.skipped == {"empty or malformed box": 1, "smaller than 5 px": 1}
    assert summary.dropped_categories == {"Cigarette": 1}
    assert Image.open(tmp_path / "out" / "Metal" / "5_1.jpg").size == (24, 36)  # padded 10% each side
    assert Image.open(tmp_path / "out" / "Metal" / "5_2.jpg").size == (14, 14)  # padded, then clipped
    scan = scan_folder(tmp_path / "out", allow_empty_classes=True)
    assert scan.class_counts()["Metal"] == 2


def test_boxes_follow_exif_orientation_and_rescaled_images(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    # stored 40x20 landscape, displayed (and annotated) as 20x40 portrait, downloaded at half size
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), (9, 9, 9)).save(imgs / "r.jpg", exif=exif)
    ann = _coco(tmp_path, [{"id": 1, "file_name": "r.jpg", "width": 40, "height": 80}], [_ann(1, 1, 0, [0, 0, 40, 20])])
    convert_taco(ann, imgs, tmp_path / "out", min_size=1)
    assert Image.open(tmp_path / "out" / "Metal" / "1_1.jpg").size == (20, 10)


def test_file_names_escaping_the_images_folder_are_refused(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (30, 30)).save(tmp_path / "secret.jpg")
    with pytest.raises(DataError, match="escapes"):
        safe_image_path(imgs, "../secret.jpg")
    ann = _coco(tmp_path, [{"id": 1, "file_name": "../secret.jpg", "width": 30, "height": 30}], [_ann(1, 1, 0, [0, 0, 20, 20])])
    summary = convert_taco(ann, imgs, tmp_path / "out")
    assert summary.skipped == {"file_name escapes images folder": 1}
    assert sum(summary.counts.values()) == 0


def test_missing_and_corrupt_images_are_counted(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    (imgs / "bad.jpg").write_bytes(b"\xff\xd8\xff broken")
    ann = _coco(
        tmp_path,
        [{"id": 1, "file_name": "gone.jpg", "width": 30, "height": 30}, {"id": 2, "file_name": "bad.jpg", "width": 30, "height": 30}],
        [_ann(1, 1, 0, [0, 0, 20, 20]), _ann(2, 2, 0, [0, 0, 20, 20])],
    )
    summary = convert_taco(ann, imgs, tmp_path / "out")
    assert summary.skipped == {"image missing": 1, "image corrupt or truncated": 1}


def test_malformed_and_truncated_json(tmp_path: Path) -> None:
    bad = tmp_path / "a.json"
    bad.write_text('{"images": [')
    with pytest.raises(DataError, match="malformed or truncated JSON"):
        convert_taco(bad, tmp_path, tmp_path / "out")
    bad.write_text('{"images": []}')
    with pytest.raises(DataError, match="missing the COCO list 'annotations'"):
        convert_taco(bad, tmp_path, tmp_path / "out")
    with pytest.raises(DataError, match="no such annotations file"):
        convert_taco(tmp_path / "nope.json", tmp_path, tmp_path / "out")


def test_user_class_map_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "map.yaml"
    good.write_text(yaml.safe_dump({"classes": ["Can"], "supercategories": {"Can": "Can"}}))
    assert load_class_map(good).target("Drink can", "Can") == "Can"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"classes": ["Can"], "supercategories": {"Can": "Tin"}}))
    with pytest.raises(ConfigError, match="'Tin' is not in classes"):
        load_class_map(bad)
    bad.write_text(yaml.safe_dump({"clases": ["Can"]}))
    with pytest.raises(ConfigError, match="did you mean 'classes'"):
        load_class_map(bad)
    with pytest.raises(ConfigError, match="not a built-in map"):
        load_class_map("taco7")
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({"classes": ["Metal"], "categories": {"Drink cans": "Metal"}}))
    ann = _coco(tmp_path, [], [])
    with pytest.raises(ConfigError, match="did you mean 'Drink can'"):
        convert_taco(ann, tmp_path, tmp_path / "out", typo)


def _expected_counts(data: dict, spec: str, min_size: int) -> Counter:
    """Count crops per class straight from the YAML and the boxes, independently of the converter."""
    shipped = yaml.safe_load((Path(__file__).parents[2] / "edgeopt" / "data" / "taco_classes.yaml").read_text())[spec]
    cats = {c["id"]: c for c in data["categories"]}
    images = {im["id"]: im for im in data["images"]}
    counts: Counter = Counter()
    for a in data["annotations"]:
        c = cats[a["category_id"]]
        target = shipped["categories"][c["name"]] if c["name"] in shipped["categories"] else shipped["supercategories"].get(c["supercategory"])
        if target is None:
            continue
        x, y, w, h = a["bbox"]
        im = images[a["image_id"]]
        left, top = max(0, round(x)), max(0, round(y))
        right, bottom = min(im["width"], round(x + w)), min(im["height"], round(y + h))
        if w <= 0 or h <= 0 or right <= left or bottom <= top or min(right - left, bottom - top) < min_size:
            continue
        counts[target] += 1
    return counts


@needs_taco
@pytest.mark.slow
def test_real_taco_annotations_give_the_counts_the_map_implies(tmp_path: Path) -> None:
    data = json.loads(TACO_ANNOTATIONS.read_text())
    imgs = tmp_path / "imgs"
    rendered: dict[tuple[int, int], Path] = {}
    for im in data["images"]:
        size = (im["width"], im["height"])
        if size not in rendered:  # one file per size, hard-linked for the rest: cheap and exact
            rendered[size] = tmp_path / "sizes" / f"{size[0]}x{size[1]}.jpg"
            rendered[size].parent.mkdir(exist_ok=True)
            Image.new("L", size, 128).save(rendered[size], quality=50)
        dest = imgs / im["file_name"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(rendered[size], dest)
    summary = convert_taco(TACO_ANNOTATIONS, imgs, tmp_path / "out", "taco6", min_size=8)
    expected = _expected_counts(data, "taco6", 8)
    assert summary.counts == {c: expected.get(c, 0) for c in summary.classes}
    assert summary.total > 2000
    scan = scan_folder(tmp_path / "out", verify=False)
    assert scan.class_counts() == summary.counts


class _Flaky(http.server.SimpleHTTPRequestHandler):
    """Serves one file; the first GET breaks off half-way, later ones honour Range."""

    payload = b""
    calls: list[str] = []

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.calls.append(self.headers.get("Range", ""))
        if self.path == "/missing.jpg":
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        body = self.payload[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if len(self.calls) == 1:
            self.wfile.write(body[: len(body) // 2])  # short read: the client must resume
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


def test_download_retries_resumes_and_writes_atomically(tmp_path: Path) -> None:
    from io import BytesIO

    buf = BytesIO()
    Image.new("RGB", (64, 48), (5, 100, 5)).save(buf, format="JPEG")
    _Flaky.payload, _Flaky.calls = buf.getvalue(), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        dest = tmp_path / "batch_1" / "img.jpg"
        download_file(f"{base}/img.jpg", dest, retries=2, backoff=0.01, timeout=5)
        assert dest.read_bytes() == _Flaky.payload
        assert _Flaky.calls[0] == "" and _Flaky.calls[1].startswith("bytes=")
        assert not dest.with_name("img.jpg.part").exists()
        with pytest.raises(DataError, match="failed after 1 attempt"):
            download_file(f"{base}/missing.jpg", tmp_path / "m.jpg", retries=2, backoff=0.01, timeout=5)
        assert not (tmp_path / "m.jpg").exists()
        # the converter downloads what is missing, then crops it
        ann = _coco(
            tmp_path,
            [{"id": 1, "file_name": "batch_1/new.jpg", "width": 64, "height": 48, "flickr_640_url": f"{base}/new.jpg"}],
            [_ann(1, 1, 0, [0, 0, 32, 24])],
        )
        summary = convert_taco(ann, tmp_path / "imgs", tmp_path / "out", download=True)
        assert summary.downloaded == 1 and summary.counts["Metal"] == 1
    finally:
        server.shutdown()


def test_malformed_entries_are_one_line_and_odd_boxes_are_skipped(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (100, 80), (1, 2, 3)).save(imgs / "x.jpg")
    image = {"id": 5, "file_name": "x.jpg", "width": 100, "height": 80}
    no_id = _coco(tmp_path, [image], [_ann(1, 5, 0, [10, 10, 20, 30])], cats=[{"name": "Drink can", "supercategory": "Can"}])
    with pytest.raises(DataError, match=r"categories\[0\] has no 'id'"):
        convert_taco(no_id, imgs, tmp_path / "out", "taco6")
    inf_size = _coco(tmp_path, [{**image, "width": float("inf")}], [_ann(1, 5, 0, [10, 10, 20, 30])])
    with pytest.raises(DataError, match=r"images\[0\] has width inf"):
        convert_taco(inf_size, imgs, tmp_path / "out", "taco6")
    boxes = _coco(tmp_path, [image], [_ann(1, 5, 0, [10, 10, float("nan"), 30]), _ann(2, 5, 0, [10, 10, float("inf"), 30]),
                                      _ann(3, 5, 0, [float("-inf"), 10, 20, 30]), _ann(4, 5, 0, [10, 10, 20, 30])])
    summary = convert_taco(boxes, imgs, tmp_path / "out", "taco6")
    assert summary.counts["Metal"] == 1 and summary.skipped == {"empty or malformed box": 3}
