"""Downloads against a real HTTP server on 127.0.0.1 serving a zip built from ../shared/data/ml-latest-small."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile

import pytest

from bert4rec.data import movielens
from bert4rec.data.download import download
from bert4rec.errors import DownloadError


class Release(http.server.BaseHTTPRequestHandler):
    payload = b""
    md5: str | None = None
    cut_after: int | None = None  # close the connection after this many body bytes

    def do_GET(self):
        if self.path.endswith(".zip.md5"):
            if self.md5 is None:
                self.send_error(404)
                return
            body = f"{self.md5}  ml-latest-small.zip\n".encode()
        elif self.path.endswith("/ml-latest-small.zip"):
            body = self.payload
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        sent = body if self.cut_after is None or self.path.endswith(".md5") else body[: self.cut_after]
        self.wfile.write(sent)
        self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(ml_latest_small, tmp_path):
    archive = tmp_path / "source.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(ml_latest_small.iterdir()):
            zf.write(path, f"ml-latest-small/{path.name}")
    payload = archive.read_bytes()
    handler = type("Handler", (Release,), {"payload": payload, "md5": hashlib.md5(payload).hexdigest()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}/datasets"
    httpd.shutdown()
    httpd.server_close()


def test_download_then_load(server, tmp_path):
    handler, url = server
    path = download("ml-latest-small", tmp_path / "cache", base_url=url, progress=False)
    assert path == tmp_path / "cache" / "ml-latest-small.zip"
    assert path.read_bytes() == handler.payload
    raw = movielens.load(path)
    assert len(raw.ratings) == 100_836
    # cached: a second call does not touch the network
    handler.payload = b"changed"
    assert download("ml-latest-small", tmp_path / "cache", base_url=url, progress=False).read_bytes() != b"changed"


def test_connection_cut_mid_file_leaves_nothing(server, tmp_path):
    handler, url = server
    handler.cut_after = len(handler.payload) // 3
    with pytest.raises(DownloadError, match=r"nothing was kept|cannot download"):
        download("ml-latest-small", tmp_path / "cache", base_url=url, progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    handler, url = server
    handler.md5 = "0" * 32
    with pytest.raises(DownloadError, match="does not match the published"):
        download("ml-latest-small", tmp_path / "cache", base_url=url, progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_not_a_zip_is_rejected_without_published_md5(server, tmp_path):
    handler, url = server
    handler.payload, handler.md5 = b"<html>error page</html>", None
    with pytest.raises(DownloadError, match="not a zip"):
        download("ml-latest-small", tmp_path / "cache", base_url=url, progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_release_name_downloads_through_env_base_url(server, monkeypatch, tmp_path):
    _, url = server
    monkeypatch.setenv("BERT4REC_BASE_URL", url)
    raw = movielens.load("ml-latest-small")
    assert len(raw.ratings) == 100_836
    assert (tmp_path / "cache" / "ml-latest-small.zip").is_file()


def test_offline_error_says_where_to_put_the_file(tmp_path):
    with pytest.raises(DownloadError) as info:
        download("ml-1m", tmp_path / "cache", base_url="http://127.0.0.1:9", progress=False)
    message = str(info.value)
    assert "BERT4REC_DATA_HOME" in message and "ml-1m.zip" in message and str(tmp_path / "cache") in message


def test_unknown_release():
    with pytest.raises(DownloadError, match="unknown MovieLens release"):
        download("ml-2b", progress=False)
