"""Look at the model registry the way an ops person does: in a real browser.

Starts ``mlflow server`` on a workspace's store (loopback, a free port), opens the registered
model's page and one version's page in headless Chromium (Debian: ``apt-get install chromium``),
and writes a screenshot and the rendered HTML of each:

    python infra/registry_page.py --workspace .alignment --model demo-policy [--version 1] [--out DIR]

``tests/test_registry_page.py`` drives the same functions and checks what the pages show.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str | None:
    """The headless-capable Chromium on PATH, or None."""
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_ui(tracking_uri: str, timeout: float = 120) -> Iterator[str]:
    """``mlflow server`` on ``tracking_uri`` for the duration; yields its base URL."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow), "server", "--backend-store-uri", tracking_uri]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_healthy(url, server, log, timeout)
            yield url
        finally:
            # the server runs uvicorn workers: stop the whole session it started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def _wait_healthy(url: str, server: subprocess.Popen, log, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).close()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"mlflow server did not come up on {url}:\n{tail}") from None
            time.sleep(0.5)


def render(url: str, png: Path, width: int = 1400, height: int = 1000) -> str:
    """Screenshot ``url`` into ``png`` and return its HTML once the page's scripts have run."""
    chrome = browser()
    if chrome is None:
        raise RuntimeError("no Chromium on PATH (Debian: apt-get install chromium)")
    common = [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    # virtual time lets the single-page app fetch and render before the capture
    common += [f"--window-size={width},{height}", "--virtual-time-budget=20000"]
    png.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [*common, f"--screenshot={png}", url], capture_output=True, check=True, timeout=180
    )
    dom = subprocess.run(
        [*common, "--dump-dom", url], capture_output=True, text=True, check=True, timeout=180
    )
    return dom.stdout


def capture(tracking_uri: str, model: str, version: str, out: Path) -> dict[str, Path]:
    """The model page and the version page: ``{page: screenshot}``, HTML beside each."""
    pages = {
        "model": f"#/models/{model}",
        "version": f"#/models/{model}/versions/{version}",
    }
    shots: dict[str, Path] = {}
    with mlflow_ui(tracking_uri) as url:
        for page, route in pages.items():
            png = out / f"registry-{page}.png"
            png.with_suffix(".html").write_text(render(f"{url}/{route}", png))
            shots[page] = png
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=".alignment", help="workspace folder")
    parser.add_argument("--tracking-uri", help="default: the workspace's SQLite store")
    parser.add_argument("--model", required=True, help="registered model name")
    parser.add_argument("--version", default="1", help="version whose page to capture")
    parser.add_argument("--out", default="benchmarks/results", help="where the files go")
    args = parser.parse_args(argv)
    uri = args.tracking_uri or f"sqlite:///{Path(args.workspace).resolve() / 'mlflow.db'}"
    for page, png in capture(uri, args.model, args.version, Path(args.out)).items():
        print(f"{page:8s} {png}  (HTML: {png.with_suffix('.html')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
