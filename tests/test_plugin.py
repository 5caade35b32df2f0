import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_comfyui_can_import_the_package_entry_point():
    spec = importlib.util.spec_from_file_location("comfyui_rest", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module.NODE_CLASS_MAPPINGS, dict)
    assert isinstance(module.NODE_DISPLAY_NAME_MAPPINGS, dict)


def test_rest_core_never_imports_comfyui():
    for path in (ROOT / "rest_core").rglob("*.py"):
        text = path.read_text()
        for name in ("import comfy", "from comfy", "folder_paths", "import server", "from server"):
            assert name not in text, f"{path.name} mentions {name}"
