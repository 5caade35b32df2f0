"""Writes the UI-format twins of workflows/api/*.json as the ComfyUI frontend itself builds them: each API graph is
loaded into the real frontend (a local ComfyUI 0.3.75 with this plugin, in headless Chromium) and the graph it
makes is saved, with seeds fixed so a queued template is reproducible, and the nodes that show an image (Load
Image, REST Reference Encoder's crop) tall enough for it: the frontend sizes them before there is an image, so they
would grow over the node below. Run after changing an API workflow;
tests/e2e/test_browser.py checks that the two formats still agree.

    python scripts/ui_workflows.py        (needs `make test`'s environment: ComfyUI, chromium, chromium-driver)
"""

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import chromium, open_frontend  # noqa: E402
from comfyui_server import ComfyServer  # noqa: E402

IMAGE_ROOM = {"LoadImage": 400, "RESTReferenceEncoder": 420}  # node heights: the widgets and a ~300 px image


def main():
    with tempfile.TemporaryDirectory() as tmp:
        server = ComfyServer(Path(tmp))
        server.install()
        server.start()
        browser = chromium(Path(tmp) / "profile")
        try:
            open_frontend(browser, server)
            for path in sorted((ROOT / "workflows" / "api").glob("*.json")):
                graph = json.loads(browser.execute_script("""
                    app.loadApiJson(arguments[0], arguments[1]);
                    for (const node of app.graph.nodes) {  // keep each seed as it is after a run
                        const control = node.widgets?.find((w) => w.name === "control_after_generate");
                        if (control) control.value = "fixed";
                        const room = arguments[2][node.type];
                        if (room) node.size[1] = Math.max(node.size[1], room);
                    }
                    app.graph.arrange();
                    return JSON.stringify(app.graph.serialize());  // as the frontend saves it: no undefined
                """, json.loads(path.read_text()), path.stem, IMAGE_ROOM))
                out = ROOT / "workflows" / path.name
                out.write_text(json.dumps(graph, indent=1) + "\n")
                print(f"wrote {out.relative_to(ROOT)}: {len(graph['nodes'])} nodes")
        finally:
            browser.quit()
            server.stop()


if __name__ == "__main__":
    main()
