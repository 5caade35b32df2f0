"""The folder as ComfyUI loads it: a package whose __init__ exposes the node mappings and the web directory."""

import importlib.util
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def plugin(tiny_checkpoint):
    spec = importlib.util.spec_from_file_location("comfyui_rest_plugin", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_the_plugin_exposes_every_node_with_a_display_name(plugin):
    names = set(plugin.NODE_CLASS_MAPPINGS)
    assert names == {"RESTModelLoader", "RESTReferenceEncoder", "RESTSpeechEncoder", "RESTStreamingSampler",
                     "RESTLiveSampler", "RESTDecode", "RESTPasteBack", "RESTRenderVideo"}
    assert set(plugin.NODE_DISPLAY_NAME_MAPPINGS) == names


def test_every_node_declares_a_complete_classic_interface(plugin):
    for name, node in plugin.NODE_CLASS_MAPPINGS.items():
        inputs = node.INPUT_TYPES()
        assert set(inputs) <= {"required", "optional", "hidden"} and inputs["required"], name
        assert callable(getattr(node, node.FUNCTION)), name
        assert node.CATEGORY == "REST" and node.DESCRIPTION, name
        assert len(getattr(node, "RETURN_NAMES", node.RETURN_TYPES)) == len(node.RETURN_TYPES), name


def test_the_web_directory_holds_the_player(plugin):
    web = ROOT / plugin.WEB_DIRECTORY
    assert (web / "rest_player.js").is_file()


def test_every_node_has_a_help_page_that_names_each_input_and_output(plugin):
    """The frontend shows WEB_DIRECTORY/docs/<node>.md as the node's help; a page that forgets an input (or keeps one
    that is gone) fails here."""
    docs = ROOT / plugin.WEB_DIRECTORY / "docs"
    for name, node in plugin.NODE_CLASS_MAPPINGS.items():
        page = (docs / f"{name}.md").read_text()
        assert page.startswith(f"# {plugin.NODE_DISPLAY_NAME_MAPPINGS[name]}\n"), name
        inputs = {k for section in ("required", "optional") for k in node.INPUT_TYPES().get(section, {})}
        outputs = set(getattr(node, "RETURN_NAMES", ()) or ())
        missing = sorted(k for k in inputs | outputs if f"`{k}`" not in page)
        assert not missing, f"{name}.md does not name {missing}"
    assert sorted(p.stem for p in docs.glob("*.md")) == sorted(plugin.NODE_CLASS_MAPPINGS)


def test_the_entry_point_also_imports_as_a_plain_module():
    # pytest imports the checkout's __init__.py with no parent package when the folder name is not an identifier
    # (e.g. a clone named comfyui-rest); it must still load
    root = ROOT
    code = ("import importlib.util, sys; sys.path.insert(0, sys.argv[1]); import comfy_stubs; comfy_stubs.install(); "
            "spec = importlib.util.spec_from_file_location('__init__', sys.argv[2]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "print(sorted(m.NODE_CLASS_MAPPINGS))")
    result = subprocess.run([sys.executable, "-c", code, str(root / "tests"), str(root / "__init__.py")],
                            capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stderr
    assert "RESTStreamingSampler" in result.stdout


def test_the_registry_icon_is_a_small_square_image_in_this_repository():
    """[tool.comfy] Icon: the registry shows it for the plugin; it must be square and at most 400 px a side."""
    import tomllib

    from PIL import Image

    comfy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["comfy"]
    repository = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    prefix = repository.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    assert comfy["Icon"].startswith(prefix)
    with Image.open(ROOT / comfy["Icon"][len(prefix):]) as icon:
        assert icon.width == icon.height <= 400


def test_every_workflow_has_a_square_thumbnail_for_the_template_browser():
    from PIL import Image

    for workflow in (ROOT / "workflows").glob("*.json"):
        with Image.open(workflow.with_suffix(".jpg")) as thumbnail:
            assert thumbnail.format == "JPEG" and thumbnail.width == thumbnail.height >= 256, workflow.name
