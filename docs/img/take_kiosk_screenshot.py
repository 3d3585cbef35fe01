"""Screenshot of the kiosk page against a running server, after uploading a photo.

    .venv/bin/mmrec serve --no-ray --port 8765          # prints the API key
    cp ../shared/data/real_photos/images/b0c03127-9dfb-4573-8934-1958396937bf.jpg /tmp/shirt.jpg
    .venv/bin/python docs/img/take_kiosk_screenshot.py /tmp/shirt.jpg docs/img/kiosk.png office KEY http://127.0.0.1:8765

Chromium may only read files under /tmp (copy the photo there); pass ``-`` as the photo for a
scene-only request. When the kiosk cannot read the photo it asks what the item is: the shot
shows that question, or, with a sixth argument (a slot: top, bottom, ...), the outfits after
that answer. Uses the DevTools client of tests/test_kiosk.py.
"""

import base64
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

import httpx  # noqa: E402
from test_kiosk import STATUS, DevTools  # noqa: E402
from websockets.sync.client import connect  # noqa: E402


def main(photo: str, out: Path, scene: str, key: str, url: str, answer: str | None = None) -> None:
    profile = tempfile.mkdtemp()
    proc = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--window-size=1200,1500",
         "--hide-scrollbars", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        while not port_file.is_file() or not port_file.read_text().strip():
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        page = next(p for p in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if p["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=50_000_000) as ws:
            b = DevTools(ws)
            b.call("Page.enable")
            b.call("Page.navigate", url=f"{url}/kiosk/#key={key}")
            b.wait_for("document.querySelectorAll('#scene option').length >= 11")
            b.js(f"document.getElementById('scene').value = {scene!r}")
            if photo != "-":
                doc = b.call("DOM.getDocument")
                node = b.call("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#photo")
                b.call("DOM.setFileInputFiles", files=[photo], nodeId=node["nodeId"])
                b.wait_for("document.getElementById('preview').style.display === 'block'")
            b.js("setTimeout(() => document.getElementById('go').click(), 0)")
            b.wait_for("document.querySelectorAll('.outfit').length || !!document.getElementById('ask')", 60)
            if answer and b.js("!!document.getElementById('ask')"):
                b.js(f"document.querySelector('#ask button[data-slot={answer}]').click()")
                b.wait_for("document.querySelectorAll('.outfit').length", 60)
            b.wait_for("[...document.querySelectorAll('.outfit img')].every(i => i.complete && i.naturalWidth > 0)", 60)
            print(b.js(STATUS))
            out.write_bytes(base64.b64decode(b.call("Page.captureScreenshot", format="png")["data"]))
    finally:
        proc.terminate()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], *sys.argv[6:7])
