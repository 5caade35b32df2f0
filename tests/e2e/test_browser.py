"""The real ComfyUI frontend (comfyui-frontend-package 1.32.9) in headless Chromium: every UI workflow loads with
all its node types known and no console errors, and queues as exactly its API twin; the live player on the
sampler receives and shows chunks while the job is still running, replays them, and lets everything go when its node
is removed; each node's help page opens from the node library, and the template browser shows our workflows with
their thumbnails. Screenshots go to artifacts/browser/."""

import json
from pathlib import Path

import av
import numpy as np
import pytest

from browser import ARTIFACTS, alerts, chromium, console_errors, fit_view, open_frontend, wait_for

from conftest import ROOT

WORKFLOWS = ROOT / "workflows"
UI_WORKFLOWS = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
OFFLINE = "api.comfy.org"  # the frontend asks the registry for news and node metadata; these machines are offline


@pytest.fixture(scope="module")
def browser(comfyui, tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    open_frontend(driver, comfyui)
    console_errors(driver)  # start-up messages of the frontend itself are not ours
    yield driver
    driver.quit()


def screenshot(browser, name: str) -> Path:
    path = ARTIFACTS / "browser" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fit_view(browser)
    browser.save_screenshot(str(path))
    return path


def default(spec: list):
    """The default of an /object_info input spec: its "default", else a combo's first option."""
    options = spec[1] if len(spec) > 1 else {}
    if "default" in options:
        return options["default"]
    return spec[0][0] if isinstance(spec[0], list) else (options.get("options") or [None])[0]


def comparable(sent: dict, twin: dict, info: dict) -> dict:
    """The inputs the frontend sent for a node, as its API twin would have them: only declared inputs (the frontend
    also sends its display widgets, LoadAudio's audioUI), and none the twin leaves out at its default (optional
    inputs of our nodes, and inputs newer cores add, such as CreateVideo's bit_depth)."""
    spec = info[sent["class_type"]]["input"]
    declared = spec.get("required", {}) | spec.get("optional", {})
    return {k: v for k, v in sent["inputs"].items()
            if k in declared and (k in twin.get("inputs", {}) or v != default(declared[k]))}


def test_the_comparison_drops_only_inputs_the_twin_leaves_at_their_default():
    info = {"N": {"input": {"required": {"a": ["INT", {"default": 1}], "c": [["x", "y"], {}]},
                            "optional": {"b": ["INT", {"default": 0}]}}}}
    sent = {"class_type": "N", "inputs": {"a": 1, "b": 0, "c": "x", "audioUI": ""}}
    assert comparable(sent, {"inputs": {"a": 1}}, info) == {"a": 1}
    assert comparable(dict(sent, inputs={"a": 1, "b": 5, "c": "y"}), {"inputs": {"a": 1}}, info) == \
        {"a": 1, "b": 5, "c": "y"}


def test_every_api_workflow_has_a_ui_twin():
    assert UI_WORKFLOWS == sorted(p.stem for p in (WORKFLOWS / "api").glob("*.json"))
    assert {"talking_head", "long_audio", "ablation", "live_session"} <= set(UI_WORKFLOWS)


@pytest.mark.parametrize("name", UI_WORKFLOWS)
def test_a_ui_workflow_loads_and_queues_as_its_api_twin(comfyui, browser, name):
    graph = json.loads((WORKFLOWS / f"{name}.json").read_text())
    browser.execute_script("return app.loadGraphData(arguments[0], true, true, arguments[1])", graph, name)
    missing = browser.execute_script(
        "return app.graph.nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type)")
    assert missing == []
    assert alerts(browser) == []  # e.g. "Invalid workflow against zod schema"
    prompt = browser.execute_async_script("const done = arguments[0]; app.graphToPrompt().then(p => done(p.output))")
    api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    info = comfyui.get("/object_info")

    assert {k: (v["class_type"], comparable(v, api.get(k, {}), info)) for k, v in prompt.items()} == \
           {k: (v["class_type"], v["inputs"]) for k, v in api.items()}
    assert [e for e in console_errors(browser) if OFFLINE not in e] == []
    assert screenshot(browser, name).stat().st_size > 10_000


@pytest.fixture(scope="module")
def played(browser):
    """The talking-head workflow run once with a long sentence, the chunks' arrival and the job's end timed."""
    graph = json.loads((WORKFLOWS / "talking_head.json").read_text())
    browser.execute_script("""
        const [graph] = arguments;
        window.restSeen = {chunks: [], end: null};
        const api = window.comfyAPI.api.api;
        api.addEventListener("rest.chunk", () => restSeen.chunks.push(performance.now()));
        api.addEventListener("execution_success", () => { restSeen.end = performance.now(); });
        return app.loadGraphData(graph, true, true, "talking_head");
    """, graph)
    browser.execute_script("app.graph.getNodeById(2).widgets[0].value = 'rest_speech_long.wav';"
                           "app.graph.getNodeById(6).widgets[2].value = 7; return app.queuePrompt(0, 1)")
    wait_for(browser, "return restSeen.end !== null", timeout=240)
    return browser.execute_script("return restSeen")


def test_the_live_player_shows_chunks_before_the_job_ends(browser, played):
    assert len(played["chunks"]) >= 3 and played["chunks"][0] < played["end"]
    player = browser.execute_script("""
        const p = app.graph.getNodeById(6).restPlayer;
        const pixels = p.canvas.getContext("2d").getImageData(0, 0, p.canvas.width, p.canvas.height).data;
        return {chunks: p.chunks.length, frames: p.frames.filter(Boolean).length, width: p.canvas.width,
                lit: pixels.some((v, i) => i % 4 !== 3 && v > 0)};
    """)
    assert player["chunks"] == len(played["chunks"]) and player["width"] == 64
    assert player["frames"] > 24
    assert player["lit"]  # a frame was drawn
    assert alerts(browser) == []
    assert [e for e in console_errors(browser) if OFFLINE not in e] == []
    screenshot(browser, "live_player")


def test_replay_plays_the_frames_again_from_the_start_with_the_sound(browser, played):
    before = browser.execute_script("""
        const p = app.graph.getNodeById(6).restPlayer;
        window.restLast = p.shown;
        p.replay();
        const c = p.canvas.getContext("2d");
        c.fillStyle = "black";
        c.fillRect(0, 0, p.canvas.width, p.canvas.height);
        return {frames: p.frames.filter(Boolean).length, sounds: p.sources.length, chunks: p.chunks.length,
                withSound: p.withSound};
    """)
    assert before["frames"] > 24 and before["sounds"] == (before["chunks"] if before["withSound"] else 0)
    # drawn again, from the start: a frame reaches the blacked-out canvas, then later frames follow
    wait_for(browser, """
        const p = app.graph.getNodeById(6).restPlayer;
        const pixels = p.canvas.getContext("2d").getImageData(0, 0, p.canvas.width, p.canvas.height).data;
        return p.shown >= 0 && p.shown < restLast && pixels.some((v, i) => i % 4 !== 3 && v > 0);
    """, timeout=10)
    first = browser.execute_script("return app.graph.getNodeById(6).restPlayer.shown")
    wait_for(browser, "return app.graph.getNodeById(6).restPlayer.shown > arguments[0]", 10, first)
    assert browser.execute_script("return app.graph.getNodeById(6).restPlayer.frames.filter(Boolean).length") == \
        before["frames"]
    assert [e for e in console_errors(browser) if OFFLINE not in e] == []


def test_removing_the_node_stops_the_players_loop_and_sound_and_releases_its_frames(browser, played):
    released = browser.execute_async_script("""
        const done = arguments[0];
        const node = app.graph.getNodeById(6);
        const p = node.restPlayer;
        const context = p.ctx, bitmap = p.frames.find(Boolean);
        app.graph.remove(node);
        let drawn = false;
        p.draw = () => { drawn = true; };  // a loop still scheduled would call this
        setTimeout(() => done({drawn, context: context ? context.state : "closed", player: p.ctx,
                               frames: p.frames.length, sounds: p.sources.length, bitmap: bitmap.width,
                               onNode: node.restPlayer}), 500);
    """)
    assert released == {"drawn": False, "context": "closed", "player": None, "frames": 0, "sounds": 0,
                        "bitmap": 0, "onNode": None}
    assert [e for e in console_errors(browser) if OFFLINE not in e] == []


def test_a_face_box_set_in_the_browser_is_previewed_and_the_video_keeps_the_portraits_size(comfyui, browser):
    graph = json.loads((WORKFLOWS / "long_audio.json").read_text())
    browser.execute_script("""
        const [graph] = arguments;
        window.restDone = null;
        window.comfyAPI.api.api.addEventListener("execution_success", () => { restDone = true; });
        return app.loadGraphData(graph, true, true, "long_audio");
    """, graph)
    browser.execute_script("""
        const set = (id, name, value) => {
            app.graph.getNodeById(id).widgets.find((w) => w.name === name).value = value;
        };
        set(4, "face_x", 8); set(4, "face_y", 24); set(4, "face_size", 64);
        set(6, "seed", 11);  // not a cached result
        return app.queuePrompt(0, 1);
    """)
    wait_for(browser, "return restDone !== null", timeout=240)
    wait_for(browser, "const im = app.graph.getNodeById(4).imgs?.[0]; "
                      "return !!im && im.complete && im.naturalWidth > 0")
    preview = browser.execute_script("""
        const im = app.graph.getNodeById(4).imgs[0];
        return {src: im.src, width: im.naturalWidth, height: im.naturalHeight};
    """)
    assert "rest_crop_" in preview["src"] and "type=temp" in preview["src"]
    assert (preview["width"], preview["height"]) == (80, 96)  # the whole portrait, the box drawn on it
    entry = next(iter(comfyui.get("/history?max_items=1").values()))
    assert entry["prompt"][2]["4"]["inputs"]["face_size"] == 64
    saved = comfyui.output_file(entry, "9")
    with av.open(str(saved)) as container:
        video = container.streams.video[0]
        assert (video.width, video.height) == (80, 96)
    assert alerts(browser) == []
    assert [e for e in console_errors(browser) if OFFLINE not in e] == []
    screenshot(browser, "face_box")


def rest_nodes(comfyui) -> dict[str, dict]:
    """Our nodes' /object_info entries by class name."""
    return {name: info for name, info in comfyui.get("/object_info").items() if info["category"] == "REST"}


def test_each_nodes_help_page_opens_from_the_node_library(comfyui, browser):
    """The node library's help button on each REST node shows js/docs/<node>.md, rendered, with every input."""
    from selenium.webdriver.common.action_chains import ActionChains

    nodes = rest_nodes(comfyui)
    assert len(nodes) == len(list((ROOT / "js" / "docs").glob("*.md")))
    browser.execute_script("return app.extensionManager.command.execute('Workspace.ToggleSidebarTab.node-library')")
    try:
        folder = wait_for(browser, "return [...document.querySelectorAll('.p-tree-node-label')]"
                                   ".find(e => e.innerText.split('\\n')[0] == 'REST')")
        folder.click()
        for name, info in nodes.items():
            leaf = wait_for(browser, "return [...document.querySelectorAll('.node-lib-node-container .node-label')]"
                                     ".find(e => e.innerText == arguments[0])", 20, info["display_name"])
            ActionChains(browser).move_to_element(leaf).perform()  # the help button shows on hover
            browser.execute_script("arguments[0].closest('.p-tree-node-content').querySelector('.help-button')"
                                   ".click()", leaf)
            page = wait_for(browser, "const m = document.querySelector('.node-help-content .markdown-content');"
                                     "return m?.querySelector('h1')?.innerText == arguments[0] && m", 20,
                            info["display_name"])
            text = " ".join(page.text.split())
            first = (ROOT / "js" / "docs" / f"{name}.md").read_text().split("\n\n")[1]
            assert " ".join(first.replace("`", "").split())[:80] in text, name
            inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
            assert [i for i in inputs if i not in text] == [], name
            browser.execute_script("[...document.querySelectorAll('button')]"
                                   ".find(b => b.querySelector('.pi-arrow-left')).click()")  # back to the library
        screenshot(browser, "help_page")
    finally:
        browser.execute_script("return app.extensionManager.command.execute("
                               "'Workspace.ToggleSidebarTab.node-library')")
    # the frontend asks for a translated page (docs/<node>/<locale>.md) first, then falls back to docs/<node>.md
    probes = [f"/docs/{name}/en.md - Failed to load resource" for name in nodes]
    assert [e for e in console_errors(browser) if OFFLINE not in e and not any(p in e for p in probes)] == []


def test_the_template_browser_shows_each_workflow_with_its_thumbnail(comfyui, browser):
    """ComfyUI lists custom nodes' workflows/ as templates; the frontend shows <workflow>.jpg beside each."""
    from PIL import Image

    names = sorted(comfyui.get("/workflow_templates")["comfyui-rest"])
    assert names == UI_WORKFLOWS
    browser.execute_script("return app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    try:
        wait_for(browser, "return [...document.querySelectorAll('[role=dialog] *')]"
                          ".find(e => e.children.length == 0 && e.innerText == 'comfyui-rest')").click()
        shown = wait_for(browser, """
            const images = [...document.querySelectorAll('[role=dialog] img')].filter(i => i.complete);
            if (images.length < arguments[0]) return null;
            const canvas = document.createElement('canvas');
            return Object.fromEntries(images.map(im => {
                canvas.width = im.naturalWidth; canvas.height = im.naturalHeight;
                const c = canvas.getContext('2d');
                c.drawImage(im, 0, 0);
                const px = c.getImageData(0, 0, canvas.width, canvas.height).data;
                const mean = [0, 1, 2].map(k => px.filter((_, i) => i % 4 == k).reduce((a, b) => a + b, 0)
                                                / (px.length / 4));
                return [im.alt, {width: im.naturalWidth, mean}];
            }));
        """, 30, len(names))
        screenshot(browser, "templates")
    finally:
        browser.execute_script("""  // its close button: the right-most one along its top
            const top = [...document.querySelectorAll('[role=dialog] button')]
                .filter(b => b.getBoundingClientRect().top < 150)
                .sort((a, b) => b.getBoundingClientRect().right - a.getBoundingClientRect().right);
            top[0]?.click();
        """)
    assert sorted(shown) == names
    for name in names:
        with Image.open(WORKFLOWS / f"{name}.jpg") as im:
            mean = np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(0)
            assert shown[name]["width"] == im.width, name
        assert max(abs(a - b) for a, b in zip(shown[name]["mean"], mean)) < 3, name  # our picture, decoded
    assert [e for e in console_errors(browser) if OFFLINE not in e] == []
