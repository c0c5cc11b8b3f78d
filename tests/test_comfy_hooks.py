"""The ComfyUI entry point's setup, without ComfyUI: its modules are stood in for by small stubs.

What is checked: one configuration step tells the engine where ComfyUI keeps keys and models,
and the unload hook is installed once, however often the setup runs.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest

from comfyui_flux2_flex.nodes.engine import local
from comfyui_flux2_flex.nodes.engine.keys import stored_keys_path
from comfyui_flux2_flex.nodes.engine.settings import configure, current

PACKAGE = "comfyui_flux2_flex.nodes.comfy"


def stub_module(monkeypatch: pytest.MonkeyPatch, name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    monkeypatch.setitem(sys.modules, name, module)
    return module


@pytest.fixture
def comfy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> types.ModuleType:
    """ComfyUI's modules as the ComfyUI layer's server module imports them; returns comfy.model_management."""
    unloads: list[str] = []
    model_management = stub_module(monkeypatch, "comfy.model_management",
                                   unload_all_models=lambda: unloads.append("comfy"), unloads=unloads)
    cli_args = stub_module(monkeypatch, "comfy.cli_args",
                           args=types.SimpleNamespace(multi_user=False, listen="127.0.0.1"))
    stub_module(monkeypatch, "comfy", model_management=model_management, cli_args=cli_args)
    utils = stub_module(monkeypatch, "comfy_execution.utils", get_executing_context=lambda: None)
    stub_module(monkeypatch, "comfy_execution", utils=utils)
    stub_module(monkeypatch, "folder_paths", get_user_directory=lambda: str(tmp_path / "user"),
                get_input_directory=lambda: str(tmp_path / "input"),
                get_folder_paths=lambda kind: [str(tmp_path / "models" / kind)])
    stub_module(monkeypatch, "server", PromptServer=types.SimpleNamespace(instance=None))
    web = stub_module(monkeypatch, "aiohttp.web", Request=object, Response=object, middleware=lambda handler: handler)
    stub_module(monkeypatch, "aiohttp", web=web)
    monkeypatch.delitem(sys.modules, f"{PACKAGE}.server", raising=False)
    yield model_management
    configure()


def test_setup_configures_the_engine_and_hooks_unload_once(comfy: types.ModuleType, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    comfy_server = importlib.import_module(f"{PACKAGE}.server")
    frees: list[str] = []
    monkeypatch.setattr(local, "free", lambda: frees.append("flux"))
    for _ in range(2):  # a second setup (a reloaded pack) must not wrap the wrapper
        comfy_server.configure_engine()
        comfy_server.free_local_pipeline_on_unload()
    assert stored_keys_path() == tmp_path / "user" / "flux2_flex" / "keys.json"
    assert current().local_model_roots == (tmp_path / "models" / "diffusers",)
    comfy.unload_all_models()
    assert frees == ["flux"] and comfy.unloads == ["comfy"]


def test_the_example_pictures_are_found_where_the_pack_keeps_them(comfy: types.ModuleType) -> None:
    """ComfyUI's input folder gets the examples' pictures on start; their folder is found from the
    server module's own place in the pack, which moved once already."""
    comfy_server = importlib.import_module(f"{PACKAGE}.server")
    assert sorted(path.name for path in comfy_server.EXAMPLE_INPUTS.glob("*.png")), comfy_server.EXAMPLE_INPUTS
