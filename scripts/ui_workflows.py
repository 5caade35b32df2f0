"""Writes the UI-format twins of workflows/api/*.json as the ComfyUI frontend itself builds them: each API graph is
loaded into the real frontend (a local ComfyUI 0.3.75 with this plugin, in headless Chromium) and the graph it
makes is saved, with seeds fixed so a queued template is reproducible, and Load Image tall enough for the
portrait's preview (the frontend sizes it before the image loads, so it would grow over the node below). Run after changing an API workflow;
tests/test_browser.py checks that the two formats still agree.

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

LOAD_IMAGE_HEIGHT = 400  # room for the widgets and a portrait preview about 300 px tall


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
                        if (node.type === "LoadImage") node.size[1] = Math.max(node.size[1], arguments[2]);
                    }
                    app.graph.arrange();
                    return JSON.stringify(app.graph.serialize());  // as the frontend saves it: no undefined
                """, json.loads(path.read_text()), path.stem, LOAD_IMAGE_HEIGHT))
                out = ROOT / "workflows" / path.name
                out.write_text(json.dumps(graph, indent=1) + "\n")
                print(f"wrote {out.relative_to(ROOT)}: {len(graph['nodes'])} nodes")
        finally:
            browser.quit()
            server.stop()


if __name__ == "__main__":
    main()
